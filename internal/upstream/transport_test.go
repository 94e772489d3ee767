package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"candor/internal/failure"
	"candor/internal/fault"
)

// TestConnectionReuse: two sequential requests to a keep-alive upstream
// share one TCP connection.
func TestConnectionReuse(t *testing.T) {
	s := startServer(t, keepAlive)
	tr, tg := newTestTransport(t, testOptions(), s.url)
	for i, wantReused := range []bool{false, true, true} {
		resp, body, err := fetch(t.Context(), tr, tg, newRequest("GET"))
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		if string(body) != "ok" || resp.Reused != wantReused {
			t.Errorf("request %d: body %q, Reused %v; want \"ok\", %v", i+1, body, resp.Reused, wantReused)
		}
	}
	if n := s.accepts.Load(); n != 1 {
		t.Errorf("accepted %d connections, want 1", n)
	}
	if n := s.requests.Load(); n != 3 {
		t.Errorf("server read %d requests, want 3", n)
	}
}

// TestNoReuse: responses after which the connection must not carry another
// request.
func TestNoReuse(t *testing.T) {
	for _, tc := range []struct {
		name  string
		resp  string
		close bool // the server closes after the response
	}{
		{name: "Connection: close", resp: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"},
		{name: "bytes after the response", resp: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale"},
		{name: "HTTP/1.0 without keep-alive", resp: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"},
		{name: "Keep-Alive timeout=1 leaves no time", resp: "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=1\r\nContent-Length: 2\r\n\r\nok"},
		{name: "close-delimited", resp: "HTTP/1.1 200 OK\r\n\r\nok", close: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, func(c *srvConn) {
				for {
					if _, err := c.readRequest(); err != nil {
						return
					}
					if c.write(tc.resp) != nil || tc.close {
						return
					}
				}
			})
			tr, tg := newTestTransport(t, testOptions(), s.url)
			for i := range 2 {
				resp, body, err := fetch(t.Context(), tr, tg, newRequest("GET"))
				if err != nil {
					t.Fatalf("request %d: %v", i+1, err)
				}
				if string(body) != "ok" || resp.Reused {
					t.Errorf("request %d: body %q, Reused %v; want \"ok\", false", i+1, body, resp.Reused)
				}
				if n := tg.IdleConns(); n != 0 {
					t.Errorf("request %d: IdleConns = %d, want 0", i+1, n)
				}
			}
			if n := s.accepts.Load(); n != 2 {
				t.Errorf("accepted %d connections, want 2", n)
			}
		})
	}
}

// TestPoolIdleExpiry: a connection idle longer than PoolIdle is closed by
// the reaper, and the next request dials afresh. There is no clock to
// inject (the pool reads time.Now), so the test waits for the reaper.
func TestPoolIdleExpiry(t *testing.T) {
	s := startServer(t, keepAlive)
	opt := testOptions()
	opt.PoolIdle = 100 * time.Millisecond
	tr, tg := newTestTransport(t, opt, s.url)
	if _, _, err := fetch(t.Context(), tr, tg, newRequest("GET")); err != nil {
		t.Fatal(err)
	}
	if n := tg.IdleConns(); n != 1 {
		t.Fatalf("IdleConns = %d, want 1", n)
	}
	waitFor(t, 5*time.Second, "the reaper to close the idle connection", func() bool { return tg.IdleConns() == 0 })
	resp, _, err := fetch(t.Context(), tr, tg, newRequest("GET"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Reused || s.accepts.Load() != 2 {
		t.Errorf("Reused = %v, accepts = %d; want a fresh connection", resp.Reused, s.accepts.Load())
	}
}

// TestKeepAliveRace: an upstream that closes every connection right after
// its first response (without Connection: close). Each pooled connection
// is dead by the next request; it must be probed dead or the request
// replayed, never surface as an error.
func TestKeepAliveRace(t *testing.T) {
	s := startServer(t, func(c *srvConn) {
		if _, err := c.readRequest(); err == nil {
			c.write(okResponse)
		}
	})
	tr, tg := newTestTransport(t, testOptions(), s.url)
	const n = 200
	failures := 0
	for i := range n {
		_, body, err := fetch(t.Context(), tr, tg, newRequest("GET"))
		if err != nil || string(body) != "ok" {
			failures++
			t.Errorf("request %d: body %q, error %v", i+1, body, err)
		}
	}
	if failures > 0 {
		t.Fatalf("%d of %d requests failed", failures, n)
	}
	if got := s.requests.Load(); got != n {
		t.Errorf("server read %d requests, want %d", got, n)
	}
}

// TestStaleConnection: the upstream takes the second request on a kept-alive
// connection and then closes or resets it without answering, the race the
// probe cannot see. A replayable request is sent again on a fresh
// connection; a POST must not be, and fails with the real cause.
func TestStaleConnection(t *testing.T) {
	for _, tc := range []struct {
		name    string
		method  string
		reset   bool
		kind    failure.Kind // KindUnknown: success
		methods []string     // the requests the upstream read, in order
	}{
		{name: "GET closed is replayed", method: "GET", methods: []string{"GET", "GET", "GET"}},
		{name: "GET reset is replayed", method: "GET", reset: true, methods: []string{"GET", "GET", "GET"}},
		{name: "POST closed is not replayed", method: "POST", kind: failure.ClosedBeforeResponse, methods: []string{"GET", "POST"}},
		{name: "POST reset is not replayed", method: "POST", reset: true, kind: failure.ResetBeforeResponse, methods: []string{"GET", "POST"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, func(c *srvConn) {
				for {
					if _, err := c.readRequest(); err != nil {
						return
					}
					if c.n == 2 && c.s.accepts.Load() == 1 {
						if tc.reset {
							c.reset()
						}
						return
					}
					if c.write(okResponse) != nil {
						return
					}
				}
			})
			tr, tg := newTestTransport(t, testOptions(), s.url)
			if _, _, err := fetch(t.Context(), tr, tg, newRequest("GET")); err != nil {
				t.Fatal(err)
			}
			req := newRequest(tc.method)
			if tc.method == "POST" {
				req.Body, req.ContentLength = strings.NewReader("a=1"), 3
			}
			resp, body, err := fetch(t.Context(), tr, tg, req)
			if tc.kind == failure.KindUnknown {
				if err != nil || string(body) != "ok" || resp.Reused {
					t.Errorf("got body %q, error %v; want \"ok\" on a fresh connection", body, err)
				}
			} else {
				fe := asFailure(t, err)
				if fe.Kind != tc.kind || fe.Phase != failure.PhaseReadHead || !fe.Reused || fe.BytesSent == 0 || fe.BytesReceived != 0 {
					t.Errorf("error %+v; want %v in read_head on a reused connection, bytes sent and none received", fe, tc.kind)
				}
			}
			var methods []string
			for _, r := range s.received() {
				m, _, _ := strings.Cut(string(r), " ")
				methods = append(methods, m)
			}
			if diff := cmp.Diff(tc.methods, methods); diff != "" {
				t.Errorf("requests the upstream read (-want +got):\n%s", diff)
			}
		})
	}
}

// TestClosedBeforeResponse: on a fresh connection nothing is replayed.
func TestClosedBeforeResponse(t *testing.T) {
	s := startServer(t, func(c *srvConn) { c.readRequest() })
	tr, tg := newTestTransport(t, testOptions(), s.url)
	_, _, err := fetch(t.Context(), tr, tg, newRequest("GET"))
	fe := asFailure(t, err)
	if fe.Kind != failure.ClosedBeforeResponse || fe.Reused || fe.BytesReceived != 0 {
		t.Errorf("error %+v; want closed_before_response on a fresh connection", fe)
	}
	if n := s.requests.Load(); n != 1 {
		t.Errorf("server read %d requests, want 1", n)
	}
}

// TestHeadFailureThroughTransport: a head failure carries the attempt's
// record.
func TestHeadFailureThroughTransport(t *testing.T) {
	s := startServer(t, func(c *srvConn) {
		if _, err := c.readRequest(); err == nil {
			c.write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
			c.hold()
		}
	})
	tr, tg := newTestTransport(t, testOptions(), s.url)
	_, _, err := fetch(t.Context(), tr, tg, newRequest("GET"))
	fe := asFailure(t, err)
	want := &failure.Error{
		Kind: failure.InvalidFraming, Phase: failure.PhaseReadHead, Upstream: "test-upstream", Target: tg.Addr,
		Attempt: 1, BytesSent: fe.BytesSent, BytesReceived: 66, Detail: "both Content-Length and Transfer-Encoding",
	}
	if diff := cmp.Diff(want, fe); diff != "" || fe.BytesSent == 0 {
		t.Errorf("error (-want +got):\n%s", diff)
	}
	if n := tg.IdleConns(); n != 0 {
		t.Errorf("IdleConns = %d, want 0", n)
	}
}

// TestDialErrors: failures before anything is sent.
func TestDialErrors(t *testing.T) {
	dns, err := fault.NewDNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dns.Close() })
	s := startServer(t, keepAlive)
	_, port, _ := net.SplitHostPort(s.ln.Addr().String())
	dns.Add("up.candor.test", netip.MustParseAddr("127.0.0.1"))

	for _, tc := range []struct {
		name  string
		url   string
		kind  failure.Kind // KindUnknown: success
		phase failure.Phase
	}{
		{name: "connection refused", url: refusedURL(t), kind: failure.ConnectRefused, phase: failure.PhaseConnect},
		{name: "NXDOMAIN", url: "http://missing.candor.test:" + port, kind: failure.DNSFailed, phase: failure.PhaseDNS},
		{name: "name resolved by the configured resolver", url: "http://up.candor.test:" + port},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opt := testOptions()
			opt.Resolver = dns.Addr()
			tr, tg := newTestTransport(t, opt, tc.url)
			_, body, err := fetch(t.Context(), tr, tg, newRequest("POST"))
			if tc.kind == failure.KindUnknown {
				if err != nil || string(body) != "ok" {
					t.Fatalf("got %q, %v", body, err)
				}
				return
			}
			fe := asFailure(t, err)
			want := &failure.Error{Kind: tc.kind, Phase: tc.phase, Upstream: "test-upstream", Target: tg.Addr, Attempt: 1, Err: fe.Err}
			if diff := cmp.Diff(want, fe); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if tc.kind.Row().Retry != failure.RetryAlways {
				t.Errorf("%v is not marked safe to retry", tc.kind)
			}
		})
	}
	if dns.Queries() == 0 {
		t.Error("the configured resolver got no query")
	}
}

// TestResponseHeaderTimeout: an upstream that takes the request and never
// answers is a 504, not a 502.
func TestResponseHeaderTimeout(t *testing.T) {
	s := startServer(t, func(c *srvConn) {
		if _, err := c.readRequest(); err == nil {
			c.hold()
		}
	})
	opt := testOptions()
	opt.ResponseHeaderTimeout = 200 * time.Millisecond
	tr, tg := newTestTransport(t, opt, s.url)
	_, _, err := fetch(t.Context(), tr, tg, newRequest("GET"))
	fe := asFailure(t, err)
	if fe.Kind != failure.ResponseTimeout || fe.Kind.Status() != 504 || fe.Phase != failure.PhaseReadHead || fe.BytesSent == 0 {
		t.Errorf("error %+v; want upstream_response_timeout (504) in read_head", fe)
	}
}

// TestCancelWhileWaiting: the client gives up while candor waits for the
// head.
func TestCancelWhileWaiting(t *testing.T) {
	got := make(chan struct{})
	s := startServer(t, func(c *srvConn) {
		if _, err := c.readRequest(); err == nil {
			close(got)
			c.hold()
		}
	})
	opt := testOptions()
	opt.ResponseHeaderTimeout = 2 * time.Second
	tr, tg := newTestTransport(t, opt, s.url)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		select {
		case <-got:
			cancel()
		case <-ctx.Done():
		}
	}()
	start := time.Now()
	_, _, err := fetch(ctx, tr, tg, newRequest("GET"))
	fe := asFailure(t, err)
	if fe.Kind != failure.ClientCanceled || fe.Phase != failure.PhaseReadHead {
		t.Errorf("error %+v; want client_canceled in read_head", fe)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("RoundTrip returned %v after it started; the cancellation was overridden", d)
	}
}

// TestTLS: https targets and the TLS causes.
func TestTLS(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)
	cfg := &tls.Config{Certificates: []tls.Certificate{ca.leaf(t, "up.candor.test")}}
	tlsSrv := startServerTLS(t, cfg, keepAlive)
	plain := startServer(t, func(c *srvConn) {
		// Read the whole ClientHello record (RFC 8446 §5.1), so that the
		// close below is a FIN, not an RST over unread bytes.
		if hdr, err := c.br.Peek(5); err == nil {
			c.br.Discard(5 + (int(hdr[3])<<8 | int(hdr[4])))
		}
		c.write("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	})
	httpsPlain := "https://" + plain.ln.Addr().String()

	for _, tc := range []struct {
		name string
		url  string
		tls  *tls.Config
		kind failure.Kind // KindUnknown: success
	}{
		{name: "trusted, IP SAN", url: tlsSrv.url, tls: &tls.Config{RootCAs: ca.pool}},
		{name: "trusted, ServerName", url: tlsSrv.url, tls: &tls.Config{RootCAs: ca.pool, ServerName: "up.candor.test"}},
		{name: "untrusted", url: tlsSrv.url, tls: &tls.Config{RootCAs: other.pool}, kind: failure.TLSUntrusted},
		{name: "wrong name", url: tlsSrv.url, tls: &tls.Config{RootCAs: ca.pool, ServerName: "other.candor.test"}, kind: failure.TLSNameMismatch},
		{name: "plaintext upstream", url: httpsPlain, tls: &tls.Config{RootCAs: ca.pool}, kind: failure.TLSNotTLS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opt := testOptions()
			opt.TLS = tc.tls
			tr, tg := newTestTransport(t, opt, tc.url)
			for i := range 2 {
				resp, body, err := fetch(t.Context(), tr, tg, newRequest("GET"))
				if tc.kind == failure.KindUnknown {
					if err != nil || string(body) != "ok" || resp.Reused != (i == 1) {
						t.Fatalf("request %d: %v", i+1, err)
					}
					continue
				}
				fe := asFailure(t, err)
				if fe.Kind != tc.kind || fe.Phase != failure.PhaseTLS || fe.BytesSent != 0 || fe.Target != tg.Addr {
					t.Errorf("error %+v; want %v in tls with nothing sent", fe, tc.kind)
				}
			}
		})
	}
}

// sliceReader returns its parts one Read each, then io.EOF.
type sliceReader struct{ parts []string }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.parts[0])
	r.parts[0] = r.parts[0][n:]
	if r.parts[0] == "" {
		r.parts = r.parts[1:]
	}
	return n, nil
}

// TestRequestBytes checks the exact bytes an upstream receives.
func TestRequestBytes(t *testing.T) {
	clientHeader := http.Header{
		"Accept":              {"*/*"},
		"X-Multi":             {"a", "b"},
		"Connection":          {"X-Drop, keep-alive", "x-drop2"},
		"X-Drop":              {"1"},
		"X-Drop2":             {"2"},
		"Keep-Alive":          {"300"},
		"Proxy-Connection":    {"keep-alive"},
		"Te":                  {"trailers"},
		"Trailer":             {"X-Sum"},
		"Upgrade":             {"h2c"},
		"Transfer-Encoding":   {"chunked"},
		"Content-Length":      {"99"},
		"Host":                {"evil.test"},
		"Expect":              {"100-continue"},
		"Proxy-Authorization": {"Basic eDp5"},
		"X-Request-Id":        {"from-the-client"},
	}
	extra := []Field{{"X-Request-Id", "r-1"}, {"X-Forwarded-For", "192.0.2.1"}}

	for _, tc := range []struct {
		name string
		req  *Request
		// head is the request line and Host; fields are the client's
		// fields in any order (map order), tail is the Extra fields, the
		// framing and the body, in order.
		head, tail string
		fields     []string
	}{
		{
			name:   "GET with hop-by-hop fields",
			req:    &Request{Method: "GET", Target: "/p?q=1", Host: "example.test", Header: clientHeader, Extra: extra},
			head:   "GET /p?q=1 HTTP/1.1\r\nHost: example.test\r\n",
			fields: []string{"Accept: */*", "X-Multi: a", "X-Multi: b"},
			tail:   "X-Request-Id: r-1\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n",
		},
		{
			name: "empty POST",
			req:  &Request{Method: "POST", Target: "/submit", Host: "example.test"},
			head: "POST /submit HTTP/1.1\r\nHost: example.test\r\n",
			tail: "Content-Length: 0\r\n\r\n",
		},
		{
			name: "DELETE without body",
			req:  &Request{Method: "DELETE", Target: "/x", Host: "example.test"},
			head: "DELETE /x HTTP/1.1\r\nHost: example.test\r\n",
			tail: "\r\n",
		},
		{
			name: "POST with Content-Length",
			req:  &Request{Method: "POST", Target: "/", Host: "h", Body: strings.NewReader("hello"), ContentLength: 5},
			head: "POST / HTTP/1.1\r\nHost: h\r\n",
			tail: "Content-Length: 5\r\n\r\nhello",
		},
		{
			name: "PUT chunked",
			req:  &Request{Method: "PUT", Target: "/", Host: "h", Body: &sliceReader{parts: []string{"hello", " world!", strings.Repeat("z", 26)}}, ContentLength: -1},
			head: "PUT / HTTP/1.1\r\nHost: h\r\n",
			tail: "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7\r\n world!\r\n1a\r\n" + strings.Repeat("z", 26) + "\r\n0\r\n\r\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, keepAlive)
			tr, tg := newTestTransport(t, testOptions(), s.url)
			if _, _, err := fetch(t.Context(), tr, tg, tc.req); err != nil {
				t.Fatal(err)
			}
			got := string(s.received()[0])
			rest, ok := strings.CutPrefix(got, tc.head)
			if !ok {
				t.Fatalf("request %q does not start with %q", got, tc.head)
			}
			middle, ok := strings.CutSuffix(rest, tc.tail)
			if !ok {
				t.Fatalf("request %q does not end with %q", got, tc.tail)
			}
			var lines []string
			if middle != "" {
				lines = strings.Split(strings.TrimSuffix(middle, "\r\n"), "\r\n")
			}
			if diff := cmp.Diff(tc.fields, lines, cmp.Transformer("sort", func(s []string) []string { return slices.Sorted(slices.Values(s)) })); diff != "" {
				t.Errorf("forwarded client fields (-want +got):\n%s\nrequest: %q", diff, got)
			}
			if i, j := slices.Index(lines, "X-Multi: a"), slices.Index(lines, "X-Multi: b"); i > j {
				t.Errorf("values of one field reordered: %q", lines)
			}
			if tc.req.ContentLength < 0 {
				// The chunked body also decodes with net/http's reader.
				_, body, _ := strings.Cut(got, "\r\n\r\n")
				dec, err := io.ReadAll(httputil.NewChunkedReader(bufio.NewReader(strings.NewReader(body))))
				if err != nil || string(dec) != "hello world!"+strings.Repeat("z", 26) {
					t.Errorf("chunked body decodes to %q, %v", dec, err)
				}
			}
		})
	}
}

// TestClientBodyError: a client body shorter than its Content-Length is the
// client's fault, and the half-sent request's connection is not reused.
func TestClientBodyError(t *testing.T) {
	s := startServer(t, keepAlive)
	tr, tg := newTestTransport(t, testOptions(), s.url)
	req := &Request{Method: "POST", Target: "/", Host: "h", Body: strings.NewReader("abc"), ContentLength: 10, Attempt: 1}
	_, _, err := fetch(t.Context(), tr, tg, req)
	if k := failure.KindOf(err); k != failure.ClientBodyInvalid {
		t.Errorf("kind = %v, want client_body_invalid (%v)", k, err)
	}
	if n := tg.IdleConns(); n != 0 {
		t.Errorf("IdleConns = %d, want 0", n)
	}
}

// poolFake parks a connection over fc in tg's pool, as if a previous
// response had left it there; the liveness probe passes (fc is no socket).
func poolFake(tr *Transport, tg *Target, fc *fakeConn) {
	c := &conn{nc: fc, raw: fc, idleLimit: tr.opt.PoolIdle}
	c.br = bufio.NewReaderSize(c, 4096)
	c.bw = bufio.NewWriterSize(c, 4096)
	tg.pool.put(c, time.Now())
}

// TestReplayNeverResendsConsumedBody: when a reused connection fails the
// write with zero bytes on the wire (the upstream's RST arrived between the
// probe and the write), bufio has already drained the request body from the
// client. The request may be replayed only with a body from GetBody;
// otherwise the replay would find the body empty and blame the client
// (client_body_invalid, 400) for the upstream's dead connection.
func TestReplayNeverResendsConsumedBody(t *testing.T) {
	for _, tc := range []struct {
		name    string
		getBody bool
	}{
		{name: "no GetBody: the write failure is reported"},
		{name: "GetBody: replayed with the whole body", getBody: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, keepAlive)
			tr, tg := newTestTransport(t, testOptions(), s.url)
			fc := newFakeConn(nil, false)
			fc.onWrite = func([]byte) (int, error) {
				return 0, &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}
			}
			poolFake(tr, tg, fc)
			req := &Request{Method: "POST", Target: "/", Host: "h", Body: strings.NewReader("payload"), ContentLength: 7, Attempt: 1}
			if tc.getBody {
				req.GetBody = func() io.Reader { return strings.NewReader("payload") }
			}
			_, body, err := fetch(t.Context(), tr, tg, req)
			got := s.received()
			if tc.getBody {
				if err != nil || string(body) != "ok" || len(got) != 1 || !strings.HasSuffix(string(got[0]), "\r\n\r\npayload") {
					t.Errorf("got %q, %v; upstream received %q", body, err, got)
				}
				return
			}
			if k := failure.KindOf(err); k != failure.WriteFailed || len(got) != 0 {
				t.Errorf("kind = %v (%v), upstream received %q; want write_failed and nothing sent", k, err, got)
			}
		})
	}
}

// TestCancelNotOverriddenByHeaderDeadline: a cancellation that lands while
// the request is being written sets a past deadline; the response-header
// deadline set afterwards must not replace it (conn.setReadDeadline checks
// the context after every deadline), or the request would wait the whole
// ResponseHeaderTimeout, or take a response the client no longer wants.
func TestCancelNotOverriddenByHeaderDeadline(t *testing.T) {
	opt := testOptions()
	opt.ResponseHeaderTimeout = 3 * time.Second
	tr, tg := newTestTransport(t, opt, refusedURL(t))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	fc := newFakeConn(nil, true)
	interrupted := make(chan struct{}, 1)
	fc.onDeadline = func(d time.Time) {
		if d.Equal(aLongTimeAgo) {
			select {
			case interrupted <- struct{}{}:
			default:
			}
		}
	}
	fc.onWrite = func(p []byte) (int, error) {
		// The client gives up just as the request goes out; the write
		// itself completes, as a socket write does.
		cancel()
		select {
		case <-interrupted:
		case <-time.After(5 * time.Second):
		}
		return len(p), nil
	}
	poolFake(tr, tg, fc)
	start := time.Now()
	_, err := tr.RoundTrip(ctx, tg, newRequest("GET"))
	if k := failure.KindOf(err); k != failure.ClientCanceled {
		t.Errorf("kind = %v, want client_canceled (%v)", k, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("RoundTrip returned %v after the cancellation; want at once", d)
	}
}
