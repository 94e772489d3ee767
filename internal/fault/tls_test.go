package fault

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/url"
	"testing"
)

func startTLSServer(t *testing.T, ca *CA, names ...string) *Server {
	t.Helper()
	s, err := NewTLSServer(ca, names...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func newCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestCAPEM(t *testing.T) {
	ca := newCA(t)
	block, rest := pem.Decode(ca.PEM())
	if block == nil || block.Type != "CERTIFICATE" || len(rest) != 0 {
		t.Fatalf("PEM() = %q", ca.PEM())
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.IsCA || cert.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("CA certificate: IsCA %v, key %v", cert.IsCA, cert.PublicKeyAlgorithm)
	}
	// A ca_file holding PEM() must verify a leaf.
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca.PEM()) {
		t.Fatal("AppendCertsFromPEM failed")
	}
	leaf, err := ca.Leaf("upstream.test", "127.0.0.1", "::1")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"upstream.test", "127.0.0.1", "::1"} {
		if _, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := ca.Leaf(); err == nil {
		t.Error("Leaf() without names succeeded")
	}
}

func TestTLSServerTrusted(t *testing.T) {
	ca := newCA(t)
	s := startTLSServer(t, ca)
	if u, _ := url.Parse(s.URL()); u.Scheme != "https" || u.Host != s.Addr() {
		t.Errorf("URL() = %q", s.URL())
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: testTimeout}
	for range 2 { // the second request reuses the connection
		resp, err := client.Get(s.URL() + "/ok")
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			OK   bool   `json:"ok"`
			Path string `json:"path"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || !body.OK || body.Path != "/ok" || resp.TLS == nil {
			t.Errorf("GET /ok: %d %+v %v", resp.StatusCode, body, err)
		}
	}
	if n := s.Requests(); n != 2 {
		t.Errorf("Requests() = %d, want 2", n)
	}
}

func TestTLSServerScript(t *testing.T) {
	ca := newCA(t)
	s := startTLSServer(t, ca, "upstream.test")
	c, err := tls.Dial("tcp", s.Addr(), &tls.Config{RootCAs: ca.Pool(), ServerName: "upstream.test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	sc, _ := Lookup("upstream_truncated_body/content_length_short")
	if _, err := io.WriteString(c, get("/script/"+sc.Name)); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != string(sc.Bytes) {
		t.Errorf("got %q, %v; want the script", got, err)
	}
}

func TestTLSServerUntrusted(t *testing.T) {
	s := startTLSServer(t, newCA(t))
	other := newCA(t)
	for _, cfg := range []*tls.Config{
		{RootCAs: x509.NewCertPool(), ServerName: "localhost"},
		{RootCAs: other.Pool(), ServerName: "localhost"},
	} {
		c, err := tls.Dial("tcp", s.Addr(), cfg)
		if err == nil {
			c.Close()
		}
		if _, ok := errors.AsType[x509.UnknownAuthorityError](err); !ok {
			t.Errorf("handshake: %v; want x509.UnknownAuthorityError", err)
		}
	}
}

func TestTLSServerNameMismatch(t *testing.T) {
	ca := newCA(t)
	s := startTLSServer(t, ca, "other.test")
	c, err := tls.Dial("tcp", s.Addr(), &tls.Config{RootCAs: ca.Pool(), ServerName: "upstream.test"})
	if err == nil {
		c.Close()
	}
	if _, ok := errors.AsType[x509.HostnameError](err); !ok {
		t.Errorf("handshake: %v; want x509.HostnameError", err)
	}
}

// TestTLSServerPlaintextRequest checks that a plaintext request to a TLS
// server gets no bytes back, only a close.
func TestTLSServerPlaintextRequest(t *testing.T) {
	s := startTLSServer(t, newCA(t))
	got, err := exchange(t, s.Addr(), get("/ok"))
	if len(got) != 0 || err != nil {
		t.Errorf("got %q, %v; want a clean close", got, err)
	}
	if n := s.Requests(); n != 0 {
		t.Errorf("Requests() = %d, want 0", n)
	}
}
