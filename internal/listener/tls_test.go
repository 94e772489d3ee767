package listener_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"candor/internal/config"
	"candor/internal/fault"
	"candor/internal/listener"
)

// quietLog discards records.
var quietLog = slog.New(slog.DiscardHandler)

// tlsCA returns a new test CA.
func tlsCA(t *testing.T) *fault.CA {
	t.Helper()
	ca, err := fault.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// writePair writes cert's chain and key as PEM files name.crt and name.key
// in dir and returns their paths.
func writePair(t *testing.T, dir, name string, cert tls.Certificate) (string, string) {
	t.Helper()
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	crt, kf := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(crt, chain, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600); err != nil {
		t.Fatal(err)
	}
	return crt, kf
}

// leafFor issues a leaf for names and writes it to dir.
func leafFor(t *testing.T, ca *fault.CA, dir, file string, names ...string) config.Certificate {
	t.Helper()
	cert, err := ca.Leaf(names...)
	if err != nil {
		t.Fatal(err)
	}
	crt, key := writePair(t, dir, file, cert)
	return config.Certificate{Cert: crt, Key: key}
}

// tlsConfig is a configuration with a tls section, as Parse leaves it.
func tlsConfig(dir string, minVersion string, h2 bool, certs ...config.Certificate) *config.Config {
	return &config.Config{
		File: filepath.Join(dir, "candor.yaml"),
		Server: config.Server{
			MaxRequestLine: 8 << 10, MaxHeaderBytes: 32 << 10, MaxHeaderFields: 100,
			ReadHeaderTimeout: config.Duration(10 * time.Second), BodyTimeout: config.Duration(30 * time.Second),
			WriteTimeout: config.Duration(30 * time.Second), IdleTimeout: config.Duration(75 * time.Second),
			MaxConnections: 100,
		},
		TLS: &config.ListenTLS{Listen: "127.0.0.1:0", Certificates: certs, MinVersion: minVersion, HTTP2: &h2},
	}
}

// loadTLS loads cfg's settings or fails the test.
func loadTLS(t *testing.T, cfg *config.Config) *listener.TLSSettings {
	t.Helper()
	s, err := listener.LoadTLS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// acceptLoop serves every connection of a new loopback listener with serve
// (one goroutine each) until the test ends, and returns its address.
func acceptLoop(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// h1Echo is a minimal HTTP/1.1 server for a connection: it answers each
// request 200 with "h1 SNI PROTO", SNI being the TLS server name the
// connection negotiated.
func h1Echo(c net.Conn) {
	defer c.Close()
	sni, proto := "", ""
	if tc, ok := c.(*tls.Conn); ok {
		st := tc.ConnectionState()
		sni, proto = st.ServerName, st.NegotiatedProtocol
	}
	br := bufio.NewReader(c)
	for range 100 {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		body := fmt.Sprintf("h1 %s %s", sni, proto)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
}

// connFunc is a ConnServer of a function, for tests whose HTTP/1.1 side
// needs no draining.
type connFunc func(net.Conn)

func (f connFunc) ServeConn(c net.Conn)         { f(c) }
func (connFunc) Shutdown(context.Context) error { return nil }
func (connFunc) Close() error                   { return nil }

// startTLS serves TLS with settings s on a new listener: HTTP/1.1 with
// h1Echo, HTTP/2 with h (a 200 "h2" handler when nil).
func startTLS(t *testing.T, s *listener.TLSSettings, h http.Handler) (*listener.TLS, string) {
	t.Helper()
	if h == nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "h2 "+r.Proto) })
	}
	h2 := listener.NewH2(h, tlsConfig(t.TempDir(), "1.2", true).Server, quietLog)
	term := listener.NewTLS(s, connFunc(h1Echo), h2, quietLog)
	addr := acceptLoop(t, term.ServeConn)
	t.Cleanup(func() { h2.Close() })
	return term, addr
}

// handshake dials addr and completes a TLS handshake with cfg.
func handshake(t *testing.T, addr string, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// peerName returns the first DNS name of the certificate the server
// presented.
func peerName(c *tls.Conn) string {
	certs := c.ConnectionState().PeerCertificates
	if len(certs) == 0 || len(certs[0].DNSNames) == 0 {
		return ""
	}
	return certs[0].DNSNames[0]
}

func TestTLSSNISelectsCertificate(t *testing.T) {
	ca, dir := tlsCA(t), t.TempDir()
	a := leafFor(t, ca, dir, "a", "a.test", "www.a.test")
	b := leafFor(t, ca, dir, "b", "b.test", "*.b.test")
	_, addr := startTLS(t, loadTLS(t, tlsConfig(dir, "1.2", true, a, b)), nil)

	for _, tc := range []struct {
		sni, want string
		verify    bool
	}{
		{"a.test", "a.test", true},
		{"www.a.test", "a.test", true},
		{"b.test", "b.test", true},
		{"api.b.test", "b.test", true},
		{"c.test", "a.test", false}, // no match: the first
		{"", "a.test", false},       // no SNI: the first
	} {
		t.Run("sni="+tc.sni, func(t *testing.T) {
			cfg := &tls.Config{ServerName: tc.sni, RootCAs: ca.Pool()}
			if !tc.verify {
				// The certificate does not name what was asked (or
				// nothing was): look at it without verifying.
				cfg.InsecureSkipVerify = true
			}
			c, err := handshake(t, addr, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.ConnectionState().ServerName; tc.sni != "" && got != tc.sni {
				t.Errorf("client sent SNI %q, want %q", got, tc.sni)
			}
			if got := peerName(c); got != tc.want {
				t.Errorf("served certificate for %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTLSVersions(t *testing.T) {
	ca, dir := tlsCA(t), t.TempDir()
	cert := leafFor(t, ca, dir, "a", "a.test")
	_, addr12 := startTLS(t, loadTLS(t, tlsConfig(dir, "1.2", true, cert)), nil)
	_, addr13 := startTLS(t, loadTLS(t, tlsConfig(dir, "1.3", true, cert)), nil)

	for _, tc := range []struct {
		name     string
		addr     string
		min, max uint16
		want     uint16 // 0: refused
	}{
		{"TLS 1.1 client refused", addr12, tls.VersionTLS10, tls.VersionTLS11, 0},
		{"TLS 1.2 client on min 1.2", addr12, tls.VersionTLS12, tls.VersionTLS12, tls.VersionTLS12},
		{"TLS 1.3 client on min 1.2", addr12, tls.VersionTLS12, tls.VersionTLS13, tls.VersionTLS13},
		{"TLS 1.2 client refused on min 1.3", addr13, tls.VersionTLS12, tls.VersionTLS12, 0},
		{"TLS 1.3 client on min 1.3", addr13, tls.VersionTLS13, tls.VersionTLS13, tls.VersionTLS13},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := handshake(t, tc.addr, &tls.Config{ServerName: "a.test", RootCAs: ca.Pool(), MinVersion: tc.min, MaxVersion: tc.max})
			if tc.want == 0 {
				if err == nil {
					t.Fatalf("handshake succeeded with version %x, want refused", c.ConnectionState().Version)
				}
				// The server refuses with a protocol_version alert (RFC
				// 8446 §6.2), which the client reports as such.
				if !strings.Contains(err.Error(), "protocol version") {
					t.Errorf("error %q, want a protocol version alert", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.ConnectionState().Version; got != tc.want {
				t.Errorf("version %x, want %x", got, tc.want)
			}
		})
	}
}

func TestTLSALPN(t *testing.T) {
	ca, dir := tlsCA(t), t.TempDir()
	cert := leafFor(t, ca, dir, "a", "a.test")
	for _, tc := range []struct {
		name   string
		http2  bool
		offer  []string
		want   string
		answer string
	}{
		{"h2 offered and accepted", true, []string{"h2", "http/1.1"}, "h2", "h2 HTTP/2.0"},
		{"http/1.1 only", true, []string{"http/1.1"}, "http/1.1", "h1 a.test http/1.1"},
		{"no ALPN", true, nil, "", "h1 a.test "},
		{"http2 off", false, []string{"h2", "http/1.1"}, "http/1.1", "h1 a.test http/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := startTLS(t, loadTLS(t, tlsConfig(dir, "1.2", tc.http2, cert)), nil)
			c, err := handshake(t, addr, &tls.Config{ServerName: "a.test", RootCAs: ca.Pool(), NextProtos: tc.offer})
			if err != nil {
				t.Fatal(err)
			}
			if got := c.ConnectionState().NegotiatedProtocol; got != tc.want {
				t.Fatalf("negotiated %q, want %q", got, tc.want)
			}
			if got := requestOver(t, c); got != tc.answer {
				t.Errorf("answer %q, want %q", got, tc.answer)
			}
		})
	}
}

// requestOver sends GET / over c with the negotiated protocol and returns
// the body.
func requestOver(t *testing.T, c *tls.Conn) string {
	t.Helper()
	var rt http.RoundTripper
	if c.ConnectionState().NegotiatedProtocol == "h2" {
		rt = h2Conn(t, c)
	} else {
		used := false
		rt = &http.Transport{DialTLSContext: func(context.Context, string, string) (net.Conn, error) {
			if used {
				return nil, errors.New("second dial")
			}
			used = true
			return c, nil
		}}
	}
	req, _ := http.NewRequest("GET", "https://a.test/", nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

func TestTLSReloadSwapsCertificates(t *testing.T) {
	ca, dir := tlsCA(t), t.TempDir()
	cert := leafFor(t, ca, dir, "site", "old.test")
	cfg := tlsConfig(dir, "1.2", true, cert)
	term, addr := startTLS(t, loadTLS(t, cfg), nil)
	served := func() string {
		c, err := handshake(t, addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		return peerName(c)
	}
	if got := served(); got != "old.test" {
		t.Fatalf("before reload: %q", got)
	}
	// An open connection keeps running across the swap.
	keep, err := handshake(t, addr, &tls.Config{ServerName: "old.test", RootCAs: ca.Pool(), NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}

	// The same files, rewritten: the load reads them again.
	leafFor(t, ca, dir, "site", "new.test")
	term.Update(loadTLS(t, cfg))
	if got := served(); got != "new.test" {
		t.Fatalf("after reload: %q", got)
	}
	if got := requestOver(t, keep); got != "h1 old.test http/1.1" {
		t.Errorf("connection opened before the reload: %q", got)
	}

	// A broken certificate file: the load fails naming the file and the
	// reason; nothing is swapped, the running certificate stays.
	if err := os.WriteFile(cert.Cert, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = listener.LoadTLS(cfg)
	if err == nil {
		t.Fatal("LoadTLS accepted a broken certificate file")
	}
	for _, want := range []string{"tls.certificates[0]", cert.Cert, "PEM"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if got := served(); got != "new.test" {
		t.Fatalf("after a rejected load: %q", got)
	}
}

func TestLoadTLSErrors(t *testing.T) {
	ca, dir := tlsCA(t), t.TempDir()
	a := leafFor(t, ca, dir, "a", "a.test")
	b := leafFor(t, ca, dir, "b", "b.test")
	for _, tc := range []struct {
		name string
		cert config.Certificate
		want []string
	}{
		{"missing certificate", config.Certificate{Cert: filepath.Join(dir, "nope.crt"), Key: a.Key}, []string{"nope.crt", "no such file"}},
		{"missing key", config.Certificate{Cert: a.Cert, Key: filepath.Join(dir, "nope.key")}, []string{"nope.key", "no such file"}},
		{"key of another certificate", config.Certificate{Cert: a.Cert, Key: b.Key}, []string{a.Cert, b.Key, "private key does not match public key"}},
		{"a folder", config.Certificate{Cert: dir, Key: a.Key}, []string{dir, "not a regular file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := listener.LoadTLS(tlsConfig(dir, "1.2", true, b, tc.cert))
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range append(tc.want, "tls.certificates[1]") {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestLoadTLSRelativeNames(t *testing.T) {
	ca, dir := tlsCA(t), t.TempDir()
	leafFor(t, ca, dir, "a", "a.test")
	// Names relative to the configuration file's folder.
	s, err := listener.LoadTLS(tlsConfig(dir, "1.2", true, config.Certificate{Cert: "a.crt", Key: "a.key"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Warnings) != 0 {
		t.Errorf("warnings for a valid certificate: %q", s.Warnings)
	}
}

func TestLoadTLSWarnsExpired(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "old.test"},
		DNSNames:     []string{"old.test"},
		NotBefore:    time.Now().Add(-48 * time.Hour),
		NotAfter:     time.Now().Add(-24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	crt, kf := writePair(t, dir, "old", tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key})
	s, err := listener.LoadTLS(tlsConfig(dir, "1.2", true, config.Certificate{Cert: crt, Key: kf}))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "expired") {
		t.Errorf("warnings %q, want one about expiry", s.Warnings)
	}
}

func TestTLSHandshakeTimeout(t *testing.T) {
	ca, dir := tlsCA(t), t.TempDir()
	cfg := tlsConfig(dir, "1.2", true, leafFor(t, ca, dir, "a", "a.test"))
	cfg.Server.ReadHeaderTimeout = config.Duration(50 * time.Millisecond)
	_, addr := startTLS(t, loadTLS(t, cfg), nil)
	// A client that connects and says nothing is closed once the
	// handshake's time is up.
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 1))
	if !errors.Is(err, io.EOF) {
		t.Fatalf("read %d bytes, %v; want the server to close the connection", n, err)
	}
}

func TestTLSPlaintextRequestAnswered(t *testing.T) {
	ca, dir := tlsCA(t), t.TempDir()
	_, addr := startTLS(t, loadTLS(t, tlsConfig(dir, "1.2", true, leafFor(t, ca, dir, "a", "a.test"))), nil)
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	// Never served: a 400 that says why, then the connection closes.
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 400 || !strings.Contains(string(body), "HTTPS") || !resp.Close {
		t.Fatalf("got %d close=%v %q", resp.StatusCode, resp.Close, body)
	}
	if n, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("after the answer: read %d, %v; want the connection closed", n, err)
	}
}

// isReset reports a connection reset by the peer.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET)
}
