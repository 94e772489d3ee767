package upstream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"candor/internal/failure"
)

// testLimits are the head limits of the tests unless a row says otherwise.
var testLimits = Limits{Bytes: 8 << 10, Fields: 100}

// testOptions returns Options for a loopback upstream with generous, bounded
// timeouts.
func testOptions() Options {
	return Options{
		Name:                  "test-upstream",
		ConnectTimeout:        2 * time.Second,
		ResponseHeaderTimeout: 5 * time.Second,
		IdleTimeout:           5 * time.Second,
		PoolIdle:              30 * time.Second,
		MaxIdlePerTarget:      4,
		HeadLimits:            testLimits,
	}
}

// newTestTransport builds a Transport for one target URL and closes it at
// the end of the test.
func newTestTransport(t *testing.T, opt Options, url string) (*Transport, *Target) {
	t.Helper()
	tr, err := New(opt, []string{url})
	if err != nil {
		t.Fatalf("New(%q): %v", url, err)
	}
	t.Cleanup(tr.Close)
	return tr, tr.Targets()[0]
}

// newRequest returns a bodiless request; GET and HEAD are replayable.
func newRequest(method string) *Request {
	return &Request{
		Method:     method,
		Target:     "/",
		Host:       "example.test",
		Replayable: method == "GET" || method == "HEAD",
		Attempt:    1,
	}
}

// fetch does one round trip and reads the whole body. resp is nil when the
// round trip failed; body holds what was read before a body error.
func fetch(ctx context.Context, tr *Transport, tg *Target, req *Request) (*Response, []byte, error) {
	resp, err := tr.RoundTrip(ctx, tg, req)
	if err != nil {
		return nil, nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, body, err
}

// asFailure returns err's *failure.Error or fails the test.
func asFailure(t *testing.T, err error) *failure.Error {
	t.Helper()
	fe, ok := errors.AsType[*failure.Error](err)
	if !ok {
		t.Fatalf("error %v (%T) is not a *failure.Error", err, err)
	}
	return fe
}

// waitFor polls cond every few milliseconds until it holds or d passes. It
// is for state that only a background goroutine (the pool reaper, the
// kernel) changes, where there is nothing to block on.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", d, what)
		case <-tick.C:
		}
	}
}

// server is a raw upstream on 127.0.0.1: each accepted connection is handed
// to handle in its own goroutine. Cleanup closes the listener and every
// connection and waits for the handlers.
type server struct {
	ln       net.Listener
	url      string
	accepts  atomic.Int64
	requests atomic.Int64
	handle   func(*srvConn)

	done  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	got   [][]byte // raw requests, in arrival order
}

// srvConn is one server-side connection.
type srvConn struct {
	s   *server
	nc  net.Conn     // TCP or TLS
	raw *net.TCPConn // the TCP connection under nc
	br  *bufio.Reader
	n   int // requests read on this connection
}

// startServer starts a plaintext raw upstream.
func startServer(t *testing.T, handle func(*srvConn)) *server {
	return startServerTLS(t, nil, handle)
}

// startServerTLS starts a raw upstream, over TLS when cfg is not nil.
func startServerTLS(t *testing.T, cfg *tls.Config, handle func(*srvConn)) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: ln, handle: handle, done: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	s.url = "http://" + ln.Addr().String()
	if cfg != nil {
		s.url = "https://" + ln.Addr().String()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepts.Add(1)
			raw := nc.(*net.TCPConn)
			if cfg != nil {
				nc = tls.Server(nc, cfg)
			}
			s.mu.Lock()
			select {
			case <-s.done:
				s.mu.Unlock()
				nc.Close()
				return
			default:
			}
			s.conns[nc] = struct{}{}
			s.wg.Add(1)
			s.mu.Unlock()
			go func() {
				defer s.wg.Done()
				defer func() {
					nc.Close()
					s.mu.Lock()
					delete(s.conns, nc)
					s.mu.Unlock()
				}()
				s.handle(&srvConn{s: s, nc: nc, raw: raw, br: bufio.NewReader(nc)})
			}()
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *server) close() {
	s.mu.Lock()
	close(s.done)
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// received returns the raw requests the server read.
func (s *server) received() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.got...)
}

// readRequest reads one request (head and body, by its framing) and records
// it. It returns the raw bytes.
func (c *srvConn) readRequest() ([]byte, error) {
	var raw bytes.Buffer
	cl, chunked := int64(0), false
	for {
		line, err := c.br.ReadString('\n')
		raw.WriteString(line)
		if err != nil {
			return raw.Bytes(), err
		}
		if line == "\r\n" {
			break
		}
		name, value, _ := strings.Cut(strings.TrimRight(line, "\r\n"), ":")
		value = strings.TrimSpace(value)
		switch {
		case strings.EqualFold(name, "Content-Length"):
			cl, _ = strconv.ParseInt(value, 10, 64)
		case strings.EqualFold(name, "Transfer-Encoding"):
			chunked = strings.EqualFold(value, "chunked")
		}
	}
	switch {
	case chunked:
		for {
			line, err := c.br.ReadString('\n')
			raw.WriteString(line)
			if err != nil {
				return raw.Bytes(), err
			}
			size, err := strconv.ParseInt(strings.TrimRight(line, "\r\n"), 16, 64)
			if err != nil {
				return raw.Bytes(), err
			}
			if size == 0 {
				break
			}
			if _, err := io.CopyN(&raw, c.br, size+2); err != nil {
				return raw.Bytes(), err
			}
		}
		for { // trailer section
			line, err := c.br.ReadString('\n')
			raw.WriteString(line)
			if err != nil {
				return raw.Bytes(), err
			}
			if line == "\r\n" {
				break
			}
		}
	case cl > 0:
		if _, err := io.CopyN(&raw, c.br, cl); err != nil {
			return raw.Bytes(), err
		}
	}
	c.n++
	c.s.requests.Add(1)
	c.s.mu.Lock()
	c.s.got = append(c.s.got, raw.Bytes())
	c.s.mu.Unlock()
	return raw.Bytes(), nil
}

// write sends raw bytes.
func (c *srvConn) write(s string) error {
	_, err := io.WriteString(c.nc, s)
	return err
}

// hold keeps the connection open until the client closes it or the server
// shuts down, discarding what arrives.
func (c *srvConn) hold() { io.Copy(io.Discard, c.br) }

// reset closes the connection with a TCP RST (SO_LINGER 0).
func (c *srvConn) reset() {
	c.raw.SetLinger(0)
	c.raw.Close()
}

// okResponse is a small keep-alive response.
const okResponse = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// keepAlive answers every request on a connection with okResponse.
func keepAlive(c *srvConn) {
	for {
		if _, err := c.readRequest(); err != nil {
			return
		}
		if c.write(okResponse) != nil {
			return
		}
	}
}

// refusedURL returns an http URL on a loopback port where nothing listens.
func refusedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// testCA is an in-memory certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "candor test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// leaf issues a server certificate for the DNS names and for 127.0.0.1.
func (ca *testCA) leaf(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// fakeConn is an in-memory net.Conn for unit tests and fuzzing: Read serves
// in, then io.EOF (or, with hold, blocks until the read deadline passes or
// the conn is closed); Write records into out unless onWrite is set.
// Deadlines behave like a real socket's: a Read with a past deadline fails
// at once, and changing the deadline wakes a blocked Read.
type fakeConn struct {
	mu         sync.Mutex
	in         []byte
	hold       bool
	rdl        time.Time
	closed     bool
	kick       chan struct{}
	out        bytes.Buffer
	onWrite    func(p []byte) (int, error)
	onDeadline func(time.Time)
}

func newFakeConn(in []byte, hold bool) *fakeConn {
	return &fakeConn{in: in, hold: hold, kick: make(chan struct{}, 1)}
}

func (f *fakeConn) Read(p []byte) (int, error) {
	for {
		f.mu.Lock()
		switch {
		case f.closed:
			f.mu.Unlock()
			return 0, net.ErrClosed
		case !f.rdl.IsZero() && !time.Now().Before(f.rdl):
			f.mu.Unlock()
			return 0, os.ErrDeadlineExceeded
		case len(f.in) > 0:
			n := copy(p, f.in)
			f.in = f.in[n:]
			f.mu.Unlock()
			return n, nil
		case !f.hold:
			f.mu.Unlock()
			return 0, io.EOF
		}
		dl := f.rdl
		f.mu.Unlock()
		var expire <-chan time.Time
		var tm *time.Timer
		if !dl.IsZero() {
			tm = time.NewTimer(time.Until(dl))
			expire = tm.C
		}
		select {
		case <-expire:
		case <-f.kick:
		}
		if tm != nil {
			tm.Stop()
		}
	}
}

func (f *fakeConn) Write(p []byte) (int, error) {
	f.mu.Lock()
	hook := f.onWrite
	f.mu.Unlock()
	if hook != nil {
		return hook(p)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, net.ErrClosed
	}
	return f.out.Write(p)
}

func (f *fakeConn) Close() error {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.wake()
	return nil
}

func (f *fakeConn) wake() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

func (f *fakeConn) SetDeadline(t time.Time) error {
	f.SetReadDeadline(t)
	return nil
}

func (f *fakeConn) SetReadDeadline(t time.Time) error {
	f.mu.Lock()
	f.rdl = t
	hook := f.onDeadline
	f.mu.Unlock()
	f.wake()
	if hook != nil {
		hook(t)
	}
	return nil
}

func (f *fakeConn) SetWriteDeadline(time.Time) error { return nil }
func (f *fakeConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (f *fakeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

var _ net.Conn = (*fakeConn)(nil)

// fakeBody returns a Body of the given mode reading in through a fakeConn,
// as RoundTrip would build it after the head, without a network.
func fakeBody(ctx context.Context, in []byte, mode BodyMode, cl int64, opt Options) (*Body, *fakeConn) {
	fc := newFakeConn(in, false)
	c := &conn{nc: fc, raw: fc, idleLimit: opt.PoolIdle, ctx: ctx}
	c.br = bufio.NewReaderSize(c, 4096)
	c.bw = bufio.NewWriterSize(c, 4096)
	t := &Transport{opt: opt, stop: make(chan struct{})}
	a := &attempt{t: t, tg: &Target{Addr: "fake:80"}, ctx: ctx, req: newRequest("GET"), start: time.Now()}
	return &Body{c: c, att: a, mode: mode, left: cl}, fc
}
