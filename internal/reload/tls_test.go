package reload

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"candor/internal/fault"
)

// tlsGateway is a running candor with a TLS listener, started from a
// configuration file in a folder of its own, with its certificates.
type tlsGateway struct {
	t    *testing.T
	st   *State
	ca   *fault.CA
	dir  string
	file string
}

// writeLeaf issues a certificate for names and writes it as dir/name.crt
// and dir/name.key.
func writeLeaf(t *testing.T, ca *fault.CA, dir, name string, names ...string) {
	t.Helper()
	cert, err := ca.Leaf(names...)
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// tlsYAML is a configuration with a plain listener (h2c as given), a TLS
// listener at tlsListen ("" for none) serving a.crt then b.crt, and one
// route to upstream.
func tlsYAML(tlsListen, upstream string, h2c bool, extra string) string {
	s := "listen: 127.0.0.1:0\nwatch: false\ndrain_timeout: 10s\n"
	if h2c {
		s += "server: {h2c: true}\n"
	}
	if tlsListen != "" {
		s += "tls:\n  listen: " + tlsListen + "\n  certificates:\n    - {cert: a.crt, key: a.key}\n    - {cert: b.crt, key: b.key}\n" + extra
	}
	return s + `routes:
  - {name: r, upstream: u}
upstreams:
  u:
    targets: [{url: "` + upstream + `"}]
    timeouts: {connect: 1s, response_header: 10s}
`
}

// startTLSGateway writes certificates for a.test and b.test and the
// configuration text, and starts candor from the file as `candor run`
// does. The TLS listener's address is localhost:0 (the plain one is
// 127.0.0.1:0: the two may not be the same address).
func startTLSGateway(t *testing.T, text string) *tlsGateway {
	t.Helper()
	ca, err := fault.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	g := &tlsGateway{t: t, ca: ca, dir: t.TempDir()}
	g.file = filepath.Join(g.dir, "candor.yaml")
	writeLeaf(t, ca, g.dir, "a", "a.test")
	writeLeaf(t, ca, g.dir, "b", "b.test")
	g.write(text)
	cfg, data, err := LoadFile(g.file)
	if err != nil {
		t.Fatal(err)
	}
	st, err := StartFile(cfg, data, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	g.st = st
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st.Shutdown(ctx)
	})
	return g
}

func (g *tlsGateway) write(text string) {
	g.t.Helper()
	if err := os.WriteFile(g.file, []byte(text), 0o600); err != nil {
		g.t.Fatal(err)
	}
}

// client is an HTTPS client trusting the test CA that offers protos
// through ALPN (h2 and http/1.1: HTTP/2 when the server agrees).
func (g *tlsGateway) client(protos ...string) *http.Client {
	cfg := &tls.Config{RootCAs: g.ca.Pool(), NextProtos: protos}
	var tr http.RoundTripper
	if len(protos) > 0 && protos[0] == "h2" {
		tr = &http2.Transport{TLSClientConfig: cfg, DialTLSContext: func(ctx context.Context, network, _ string, cfg *tls.Config) (net.Conn, error) {
			d := &tls.Dialer{Config: cfg}
			return d.DialContext(ctx, network, g.st.TLSAddr())
		}}
	} else {
		tr = &http.Transport{TLSClientConfig: cfg, DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, g.st.TLSAddr())
		}}
	}
	g.t.Cleanup(func() {
		if c, ok := tr.(interface{ CloseIdleConnections() }); ok {
			c.CloseIdleConnections()
		}
	})
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// served returns the first DNS name of the certificate the TLS listener
// presents for sni.
func (g *tlsGateway) served(sni string) string {
	g.t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", g.st.TLSAddr(), &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err != nil {
		g.t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].DNSNames[0]
}

// echoUpstream answers "PROTO XFP" (the protocol and X-Forwarded-Proto
// the upstream saw) followed by the request body; /slow waits for
// release first and signals started.
type echoUpstream struct {
	url     string
	started chan struct{}
	release chan struct{}
	once    sync.Once
}

func startEcho(t *testing.T) *echoUpstream {
	t.Helper()
	e := &echoUpstream{started: make(chan struct{}), release: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			e.once.Do(func() { close(e.started) })
			<-e.release
		}
		body, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Proto+" "+r.Header.Get("X-Forwarded-Proto")+" "+string(body))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	e.url = "http://" + ln.Addr().String()
	return e
}

// fetch sends method url with c and returns the response with its body
// read (and the error reading it).
func fetch(t *testing.T, c *http.Client, method, url, body string) (*http.Response, string, error) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp, string(data), err
}

func TestTLSGatewayHTTP2AndHTTP1(t *testing.T) {
	up := startEcho(t)
	g := startTLSGateway(t, tlsYAML("localhost:0", up.url, false, ""))
	for _, tc := range []struct {
		name   string
		protos []string
		proto  string
	}{
		{"h2 through ALPN", []string{"h2", "http/1.1"}, "HTTP/2.0"},
		{"HTTP/1.1 over TLS", []string{"http/1.1"}, "HTTP/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body, err := fetch(t, g.client(tc.protos...), "POST", "https://a.test/x", "hello")
			if err != nil {
				t.Fatal(err)
			}
			if resp.Proto != tc.proto {
				t.Errorf("client spoke %s, want %s", resp.Proto, tc.proto)
			}
			// The upstream is spoken to in HTTP/1.1 and told the client
			// came over https.
			if want := "HTTP/1.1 https hello"; resp.StatusCode != 200 || body != want {
				t.Errorf("got %d %q, want 200 %q", resp.StatusCode, body, want)
			}
			if resp.TLS == nil || resp.TLS.PeerCertificates[0].DNSNames[0] != "a.test" {
				t.Errorf("certificate served for a.test: %v", resp.TLS)
			}
		})
	}
}

func TestTLSGatewaySNI(t *testing.T) {
	up := startEcho(t)
	g := startTLSGateway(t, tlsYAML("localhost:0", up.url, false, ""))
	for sni, want := range map[string]string{"a.test": "a.test", "b.test": "b.test", "c.test": "a.test", "": "a.test"} {
		if got := g.served(sni); got != want {
			t.Errorf("SNI %q: served %q, want %q", sni, got, want)
		}
	}
}

func TestTLSGatewayMinVersion(t *testing.T) {
	up := startEcho(t)
	g := startTLSGateway(t, tlsYAML("localhost:0", up.url, false, "  min_version: \"1.3\"\n"))
	_, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", g.st.TLSAddr(), &tls.Config{ServerName: "a.test", RootCAs: g.ca.Pool(), MaxVersion: tls.VersionTLS12})
	if err == nil {
		t.Fatal("a TLS 1.2 client was accepted with min_version 1.3")
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", g.st.TLSAddr(), &tls.Config{ServerName: "a.test", RootCAs: g.ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Errorf("version %x", v)
	}
}

func TestTLSGatewayH2C(t *testing.T) {
	up := startEcho(t)
	g := startTLSGateway(t, tlsYAML("", up.url, true, ""))
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, _ string, _ *tls.Config) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, g.st.GatewayAddr())
	}}
	defer tr.CloseIdleConnections()
	resp, body, err := fetch(t, &http.Client{Transport: tr, Timeout: 10 * time.Second}, "POST", "http://a.test/", "over h2c")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Proto != "HTTP/2.0" || resp.StatusCode != 200 || body != "HTTP/1.1 http over h2c" {
		t.Errorf("got %s %d %q", resp.Proto, resp.StatusCode, body)
	}
}

func TestTLSGatewayErrorOverH2(t *testing.T) {
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	ln.Close()
	g := startTLSGateway(t, tlsYAML("localhost:0", refused, false, ""))
	resp, body, err := fetch(t, g.client("h2"), "GET", "https://a.test/", "")
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Status int    `json:"status"`
		Cause  string `json:"cause"`
	}
	if resp.Proto != "HTTP/2.0" || resp.StatusCode != 502 || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("got %s %d %s: %s", resp.Proto, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if err := json.Unmarshal([]byte(body), &p); err != nil || p.Cause != "upstream_connect_refused" || p.Status != 502 {
		t.Errorf("problem %+v (%v): %s", p, err, body)
	}
}

func TestTLSGatewayAbortResetsStream(t *testing.T) {
	// An upstream that promises 100 bytes, sends 7 and closes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				c.Read(buf) // the request head (small, one read)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
			}()
		}
	}()
	g := startTLSGateway(t, tlsYAML("localhost:0", "http://"+ln.Addr().String(), false, ""))
	resp, body, err := fetch(t, g.client("h2"), "GET", "https://a.test/", "")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// The client sees a broken response: the stream is reset, never a
	// clean end short of the promised length.
	se, ok := errors.AsType[http2.StreamError](err)
	if !ok || se.Code != http2.ErrCodeInternal {
		t.Fatalf("body %q, error %v; want the stream reset with INTERNAL_ERROR", body, err)
	}
}

func TestTLSGatewayCertificateReload(t *testing.T) {
	up := startEcho(t)
	text := tlsYAML("localhost:0", up.url, false, "")
	g := startTLSGateway(t, text)
	addr := g.st.TLSAddr()
	if got := g.served("a.test"); got != "a.test" {
		t.Fatalf("before: %q", got)
	}
	// The certificate file is renewed (new names): a reload reads it again,
	// on the same socket.
	writeLeaf(t, g.ca, g.dir, "a", "a2.test")
	if err := g.st.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := g.st.TLSAddr(); got != addr {
		t.Errorf("TLS listener moved from %s to %s", addr, got)
	}
	if got := g.served("a2.test"); got != "a2.test" {
		t.Fatalf("after reload: %q", got)
	}

	// A broken certificate file rejects the reload whole, with the file and
	// the reason; the running certificates stay.
	broken := filepath.Join(g.dir, "b.crt")
	if err := os.WriteFile(broken, []byte("-----BEGIN CERTIFICATE-----\nbroken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := g.st.Reload()
	if err == nil {
		t.Fatal("a reload with a broken certificate file was accepted")
	}
	if !strings.Contains(err.Error(), broken) {
		t.Errorf("error %q does not name %s", err, broken)
	}
	if st := g.st.Status(); st.ReloadsFailed != 1 || st.Generation != 2 {
		t.Errorf("status after the rejected reload: %+v", st)
	}
	if got := g.served("b.test"); got != "b.test" {
		t.Errorf("after the rejected reload: served %q for b.test", got)
	}
	resp, body, err := fetch(t, g.client("h2"), "GET", "https://a2.test/", "")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("request after the rejected reload: %v %q", err, body)
	}
}

func TestTLSGatewayListenerLifecycle(t *testing.T) {
	up := startEcho(t)
	g := startTLSGateway(t, tlsYAML("", up.url, false, ""))
	if a := g.st.TLSAddr(); a != "" {
		t.Fatalf("TLS listener %s without a tls section", a)
	}
	// tls added: the listener opens.
	g.write(tlsYAML("localhost:0", up.url, false, ""))
	if err := g.st.Reload(); err != nil {
		t.Fatal(err)
	}
	first := g.st.TLSAddr()
	if first == "" {
		t.Fatal("no TLS listener after tls was added")
	}
	if resp, _, err := fetch(t, g.client("h2"), "GET", "https://a.test/", ""); err != nil || resp.StatusCode != 200 {
		t.Fatalf("request: %v", err)
	}

	// A port already taken rejects the reload; the listener stays.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	g.write(tlsYAML(taken.Addr().String(), up.url, false, ""))
	if err := g.st.Reload(); err == nil || !strings.Contains(err.Error(), "tls.listen") {
		t.Fatalf("reload onto a taken port: %v", err)
	}
	if got := g.st.TLSAddr(); got != first {
		t.Fatalf("TLS listener %s after a rejected reload, want %s", got, first)
	}

	// tls removed: the listener closes.
	g.write(tlsYAML("", up.url, false, ""))
	if err := g.st.Reload(); err != nil {
		t.Fatal(err)
	}
	if a := g.st.TLSAddr(); a != "" {
		t.Fatalf("TLS listener %s after tls was removed", a)
	}
	waitRefused(t, first)
}

// waitRefused waits (bounded) until nothing accepts at addr: a replaced
// listener is closed in the background.
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	for range 200 {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s still accepts connections", addr)
}

func TestTLSGatewayShutdownDrainsH2(t *testing.T) {
	up := startEcho(t)
	g := startTLSGateway(t, tlsYAML("localhost:0", up.url, false, ""))
	addr := g.st.TLSAddr()
	type result struct {
		resp *http.Response
		body string
		err  error
	}
	c := g.client("h2")
	done := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", "https://a.test/slow", nil)
		resp, err := c.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- result{resp, string(b), err}
	}()
	<-up.started

	var shutdownErr atomic.Value
	shut := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.st.Shutdown(ctx); err != nil {
			shutdownErr.Store(err)
		}
		close(shut)
	}()
	// The listener stops accepting while the request is in flight...
	waitRefused(t, addr)
	select {
	case <-shut:
		t.Fatal("Shutdown returned with a request in flight")
	default:
	}
	// ...which then completes.
	close(up.release)
	r := <-done
	if r.err != nil || r.resp.StatusCode != 200 || r.body != "HTTP/1.1 https " {
		t.Fatalf("in-flight request: %v %q", r.err, r.body)
	}
	<-shut
	if err := shutdownErr.Load(); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// prefaceAnswer sends the HTTP/2 preface and a SETTINGS frame to addr and
// returns the first bytes of the answer: an HTTP/2 SETTINGS frame when h2c
// is served, an HTTP/1.1 status line otherwise.
func prefaceAnswer(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := http2.NewFramer(c, nil).WriteSettings(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 12)
	n, err := io.ReadFull(c, buf)
	if err != nil {
		t.Fatalf("read %q: %v", buf[:n], err)
	}
	return string(buf)
}

func TestTLSGatewayH2CFollowsReload(t *testing.T) {
	up := startEcho(t)
	g := startTLSGateway(t, tlsYAML("", up.url, false, ""))
	addr := g.st.GatewayAddr()
	// h2c off: the preface is a request line of another version.
	if got := prefaceAnswer(t, addr); got != "HTTP/1.1 505" {
		t.Fatalf("h2c off: %q", got)
	}
	// h2c on by reload, on the same listener.
	g.write(tlsYAML("", up.url, true, ""))
	if err := g.st.Reload(); err != nil {
		t.Fatal(err)
	}
	if g.st.GatewayAddr() != addr {
		t.Fatal("the gateway listener was replaced")
	}
	// A SETTINGS frame: 9-byte header, type 0x4, on stream 0.
	if got := prefaceAnswer(t, addr); got[3] != 0x4 || got[5:9] != "\x00\x00\x00\x00" {
		t.Fatalf("h2c on: %q, want a SETTINGS frame", got)
	}
	// And off again.
	g.write(tlsYAML("", up.url, false, ""))
	if err := g.st.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := prefaceAnswer(t, addr); got != "HTTP/1.1 505" {
		t.Fatalf("h2c off again: %q", got)
	}
}

func TestTLSGatewayCertificatesReadAtApply(t *testing.T) {
	up := startEcho(t)
	g := startTLSGateway(t, tlsYAML("localhost:0", up.url, false, ""))
	cfg, _, err := LoadFile(g.file)
	if err != nil {
		t.Fatal(err)
	}
	// The file breaks between validation and use: the load still fails
	// whole, naming the file.
	broken := filepath.Join(g.dir, "a.key")
	if err := os.WriteFile(broken, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = g.st.apply(cfg)
	if err == nil || !strings.Contains(err.Error(), broken) || !strings.Contains(err.Error(), "tls.certificates[0]") {
		t.Fatalf("apply: %v", err)
	}
	if got := g.served("a.test"); got != "a.test" {
		t.Errorf("served %q after the failed load", got)
	}
	if st := g.st.Status(); st.Generation != 1 {
		t.Errorf("generation %d after the failed load", st.Generation)
	}
}

func TestTLSGatewayStalledBodyOverH2(t *testing.T) {
	up := startEcho(t)
	text := tlsYAML("localhost:0", up.url, false, "")
	text = strings.Replace(text, "drain_timeout: 10s\n", "drain_timeout: 10s\nserver: {body_timeout: 100ms}\n", 1)
	g := startTLSGateway(t, text)
	pr, pw := io.Pipe()
	defer pw.Close()
	req, err := http.NewRequest("POST", "https://a.test/", pr)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := g.client("h2").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var p struct {
		Cause string `json:"cause"`
	}
	json.Unmarshal(body, &p)
	if resp.StatusCode != 408 || p.Cause != "request_timeout" {
		t.Fatalf("stalled upload over h2: %d %s", resp.StatusCode, body)
	}
}
