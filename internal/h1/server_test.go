package h1

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"candor/internal/failure"
)

// TestKeepAlive: requests follow each other on one connection, each with
// its own fields (nothing of the previous request's header survives), on
// the hot path and after the connection went idle (hotIdle).
func TestKeepAlive(t *testing.T) {
	var seen []string
	var mu sync.Mutex
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.RemoteAddr+" "+r.Header.Get("X-A")+" "+r.Header.Get("X-B"))
		mu.Unlock()
		echo(w, r)
	}), Config{})
	cl := ts.dial(t)
	cl.send("GET /1 HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\r\n")
	cl.read("GET").want(t, 200, "GET /1 ")
	cl.send("POST /2 HTTP/1.1\r\nHost: a\r\nX-B: 2\r\nContent-Length: 3\r\n\r\nabc")
	cl.read("POST").want(t, 200, "POST /2 abc")
	// Past hotIdle the connection waits without its buffers.
	time.Sleep(2 * hotIdle)
	cl.send("GET /3 HTTP/1.1\r\nHost: a\r\n\r\n")
	cl.read("GET").want(t, 200, "GET /3 ")
	local := cl.c.LocalAddr().String()
	want := []string{local + " 1 ", local + "  2", local + "  "}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, "|") != strings.Join(want, "|") {
		t.Fatalf("requests %q, want %q", seen, want)
	}
}

// TestRequestFields: what the handler sees of a request, as net/http would
// show it.
func TestRequestFields(t *testing.T) {
	got := make(chan *http.Request, 1)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c := r.Clone(context.Background())
		c.Body = io.NopCloser(strings.NewReader(string(b)))
		got <- c
	}), Config{})
	cl := ts.dial(t)
	cl.send("PUT /a%20b/c?x=1 HTTP/1.1\r\nHost: example.com:8080\r\nx-custom-FIELD: v1\r\nAccept: */*\r\nAccept: text/html\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\nX-T: dropped\r\n\r\n")
	res := cl.read("PUT")
	res.want(t, 200, "")
	if res.Header.Get("Content-Length") != "0" || !res.Close {
		t.Errorf("response header %v", res.Header)
	}
	r := <-got
	b, _ := io.ReadAll(r.Body)
	for what, pair := range map[string][2]any{
		"Method":         {r.Method, "PUT"},
		"Host":           {r.Host, "example.com:8080"},
		"Path":           {r.URL.Path, "/a b/c"},
		"RawQuery":       {r.URL.RawQuery, "x=1"},
		"RequestURI":     {r.RequestURI, "/a%20b/c?x=1"},
		"Proto":          {r.Proto, "HTTP/1.1"},
		"ContentLength":  {r.ContentLength, int64(-1)},
		"Close":          {r.Close, true},
		"X-Custom-Field": {r.Header.Get("X-Custom-Field"), "v1"},
		"Accept":         {strings.Join(r.Header["Accept"], ","), "*/*,text/html"},
		"body":           {string(b), "abc"},
		"RemoteAddr":     {r.RemoteAddr, cl.c.LocalAddr().String()},
		"TLS":            {r.TLS == nil, true},
		"Trailer":        {len(r.Trailer), 0},
	} {
		if pair[0] != pair[1] {
			t.Errorf("%s = %#v, want %#v", what, pair[0], pair[1])
		}
	}
	if !cl.closed() {
		t.Error("connection open after Connection: close")
	}
}

// TestPipelining: requests sent together are answered in order, one at a
// time: the next is read only after the previous response is complete.
func TestPipelining(t *testing.T) {
	var inFlight, most atomic.Int32
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		if n > most.Load() {
			most.Store(n)
		}
		echo(w, r)
	}), Config{})
	cl := ts.dial(t)
	cl.send("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n" +
		"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nxy" +
		"POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n" +
		"\r\nHEAD /4 HTTP/1.1\r\nHost: a\r\n\r\n" +
		"GET /5 HTTP/1.1\r\nHost: a\r\n\r\n")
	cl.read("GET").want(t, 200, "GET /1 ")
	cl.read("POST").want(t, 200, "POST /2 xy")
	cl.read("POST").want(t, 200, "POST /3 z")
	head := cl.read("HEAD")
	head.want(t, 200, "")
	if head.ContentLength != int64(len("HEAD /4 ")) {
		t.Errorf("HEAD Content-Length %d", head.ContentLength)
	}
	cl.read("GET").want(t, 200, "GET /5 ")
	if most.Load() != 1 {
		t.Fatalf("%d handlers ran at once", most.Load())
	}
}

// TestExpectContinue: 100 Continue goes out when the handler reads the
// body, never when it answers without reading it (the connection then
// closes).
func TestExpectContinue(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/read" {
			echo(w, r)
			return
		}
		w.Header().Set("Content-Length", "2")
		w.WriteHeader(403)
		io.WriteString(w, "no")
	}), Config{})

	cl := ts.dial(t)
	cl.send("POST /read HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
	line, err := cl.br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	if l, _ := cl.br.ReadString('\n'); l != "\r\n" {
		t.Fatalf("100 Continue head ends with %q", l)
	}
	cl.send("abc")
	cl.read("POST").want(t, 200, "POST /read abc")

	// Refused without reading: no 100, the final answer, then close.
	cl.send("POST /deny HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
	res := cl.read("POST")
	res.want(t, 403, "no")
	if !res.Close || !cl.closed() {
		t.Fatalf("connection kept after an unread body the client holds back: %v", res.Header)
	}

	// HTTP/1.0 never gets a 100.
	cl = ts.dial(t)
	cl.send("POST /read HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc")
	cl.read("POST").want(t, 200, "POST /read abc")
}

// TestUnreadBody: a small body the handler did not read is drained and the
// connection kept; a large one closes the connection.
func TestUnreadBody(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "2")
		io.WriteString(w, "ok")
	}), Config{})
	cl := ts.dial(t)
	cl.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789")
	cl.read("POST").want(t, 200, "ok")
	cl.send("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
	cl.read("POST").want(t, 200, "ok")
	cl.send(get("/"))
	cl.read("GET").want(t, 200, "ok")

	cl.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n0123456789")
	res := cl.read("POST")
	res.want(t, 200, "ok")
	if !res.Close || !cl.closed() {
		t.Fatalf("connection kept with 10MB of body unread: %v", res.Header)
	}
}

// TestHead: a HEAD response has its header fields and no body.
func TestHead(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/cl" {
			w.Header().Set("Content-Length", "5")
		}
		n, err := io.WriteString(w, "hello")
		if n != 5 || err != nil {
			t.Errorf("Write to a HEAD response: %d, %v", n, err)
		}
	}), Config{})
	cl := ts.dial(t)
	cl.send("HEAD /cl HTTP/1.1\r\nHost: a\r\n\r\n")
	res := cl.read("HEAD")
	res.want(t, 200, "")
	if res.ContentLength != 5 {
		t.Errorf("Content-Length %d", res.ContentLength)
	}
	cl.send("HEAD /none HTTP/1.1\r\nHost: a\r\n\r\n")
	res = cl.read("HEAD")
	if res.Header.Get("Transfer-Encoding") != "" || len(res.TransferEncoding) > 0 || res.Header.Get("Content-Length") != "" {
		t.Errorf("HEAD without a length: %v %v", res.Header, res.TransferEncoding)
	}
	cl.send("GET /cl HTTP/1.1\r\nHost: a\r\n\r\n")
	cl.read("GET").want(t, 200, "hello")
}

// TestResponseFraming: net/http's conventions for the response head.
func TestResponseFraming(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		switch r.URL.Path {
		case "/nothing":
		case "/chunked":
			io.WriteString(w, "ab")
			w.(http.Flusher).Flush()
			io.WriteString(w, strings.Repeat("c", 10000))
		case "/nocontenttype":
			h["Content-Type"] = nil
			h["Date"] = nil
			h.Set("X-Bad", "a\r\nInjected: b")
			h.Set("Content-Length", "4")
			io.WriteString(w, "<h1>")
		case "/204":
			h.Set("Content-Length", "3")
			w.WriteHeader(204)
			if _, err := io.WriteString(w, "abc"); err != http.ErrBodyNotAllowed {
				t.Errorf("Write to a 204: %v", err)
			}
		case "/over":
			h.Set("Content-Length", "2")
			if _, err := io.WriteString(w, "abc"); err != http.ErrContentLength {
				t.Errorf("Write past Content-Length: %v", err)
			}
			io.WriteString(w, "ab")
		case "/short":
			h.Set("Content-Length", "5")
			io.WriteString(w, "ab")
		case "/103":
			h.Set("Link", "</s.css>; rel=preload")
			w.WriteHeader(103)
			h.Del("Link")
			h.Set("Content-Length", "1")
			io.WriteString(w, "x")
		}
	}), Config{})
	cl := ts.dial(t)
	cl.send(get("/nothing"))
	res := cl.read("GET")
	res.want(t, 200, "")
	if res.Header.Get("Content-Length") != "0" || res.Header.Get("Date") == "" || res.Header.Get("Content-Type") != "" {
		t.Errorf("empty response head %v", res.Header)
	}
	cl.send(get("/chunked"))
	res = cl.read("GET")
	res.want(t, 200, "ab"+strings.Repeat("c", 10000))
	if len(res.TransferEncoding) != 1 || res.TransferEncoding[0] != "chunked" {
		t.Errorf("TransferEncoding %v", res.TransferEncoding)
	}
	cl.send(get("/nocontenttype"))
	res = cl.read("GET")
	res.want(t, 200, "<h1>")
	if _, ok := res.Header["Content-Type"]; ok {
		t.Errorf("Content-Type sent: %v", res.Header)
	}
	if _, ok := res.Header["Date"]; ok {
		t.Errorf("Date sent: %v", res.Header)
	}
	if res.Header.Get("X-Bad") != "a  Injected: b" || res.Header.Get("Injected") != "" {
		t.Errorf("a value with CR LF: %v", res.Header)
	}
	cl.send(get("/204"))
	res = cl.read("GET")
	res.want(t, 204, "")
	if res.Header.Get("Content-Length") != "" {
		t.Errorf("204 with Content-Length: %v", res.Header)
	}
	cl.send(get("/over"))
	cl.read("GET").want(t, 200, "ab")
	cl.send(get("/103"))
	res = cl.read("GET")
	if res.StatusCode != 103 || res.Header.Get("Link") == "" {
		t.Errorf("103: %d %v", res.StatusCode, res.Header)
	}
	res = cl.read("GET")
	res.want(t, 200, "x")
	if res.Header.Get("Link") != "" {
		t.Errorf("200 after 103: %v", res.Header)
	}
	cl.send(get("/short"))
	res = cl.read("GET")
	if res.bodyErr == nil || !cl.closed() {
		t.Fatalf("a body short of its Content-Length: %q, %v", res.body, res.bodyErr)
	}
}

// TestHTTP10: an HTTP/1.0 client gets HTTP/1.0 responses; keep-alive only
// when it asks; a body without length ends with the connection.
func TestHTTP10(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			io.WriteString(w, "streamed")
			return
		}
		echo(w, r)
	}), Config{})
	cl := ts.dial(t)
	cl.send("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	res := cl.read("GET")
	res.want(t, 200, "GET /a ")
	if res.ProtoMinor != 0 || res.Header.Get("Connection") != "keep-alive" {
		t.Errorf("%s %v", res.Proto, res.Header)
	}
	cl.send("GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	res = cl.read("GET")
	res.want(t, 200, "streamed")
	if !cl.closed() {
		t.Error("close-delimited body without a close")
	}
	cl = ts.dial(t)
	cl.send("GET /a HTTP/1.0\r\n\r\n")
	cl.read("GET").want(t, 200, "GET /a ")
	if !cl.closed() {
		t.Error("HTTP/1.0 without keep-alive kept open")
	}
}

// TestChunkedTrailers: trailers set after WriteHeader, declared or with
// http.TrailerPrefix, follow the last chunk.
func TestChunkedTrailers(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Declared")
		w.WriteHeader(200)
		io.WriteString(w, "part1")
		w.(http.Flusher).Flush()
		io.WriteString(w, "part2")
		w.Header().Set("X-Declared", "d")
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
	}), Config{})
	cl := ts.dial(t)
	cl.send(get("/"))
	res := cl.read("GET")
	res.want(t, 200, "part1part2")
	if res.Trailer.Get("X-Declared") != "d" || res.Trailer.Get("Grpc-Status") != "0" {
		t.Fatalf("trailers %v", res.Trailer)
	}
	cl.send(get("/"))
	cl.read("GET").want(t, 200, "part1part2")
}

// TestHijack: a hijacked connection is the handler's: it gets the bytes
// that arrived after the head, and the server neither writes to nor closes
// the connection, even after the handler returned.
func TestHijack(t *testing.T) {
	taken := make(chan net.Conn, 1)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		early, _ := rw.Reader.Peek(rw.Reader.Buffered())
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\nearly="+string(early))
		if _, err := w.Write([]byte("x")); err != http.ErrHijacked {
			t.Errorf("Write after Hijack: %v", err)
		}
		taken <- c
	}), Config{IdleTimeout: 50 * time.Millisecond, ReadHeaderTimeout: 50 * time.Millisecond})
	cl := ts.dial(t)
	cl.send("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\nhello")
	res, err := http.ReadResponse(cl.br, nil)
	if err != nil || res.StatusCode != 101 {
		t.Fatalf("%v %v", res, err)
	}
	c := <-taken
	// Past the server's timeouts, the connection is still the handler's.
	time.Sleep(150 * time.Millisecond)
	if n := ts.s.Conns(); n != 0 {
		t.Errorf("server counts %d connections after the hijack", n)
	}
	io.WriteString(c, " later")
	c.Close()
	rest, _ := io.ReadAll(cl.br)
	if string(rest) != "early=hello later" {
		t.Fatalf("after the 101: %q", rest)
	}
}

// TestAbort: panic(http.ErrAbortHandler) cuts the response off (no last
// chunk) and closes the connection, without a log record.
func TestAbort(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}), Config{})
	cl := ts.dial(t)
	cl.send(get("/"))
	res := cl.read("GET")
	if res.body != "partial" || !errors.Is(res.bodyErr, io.ErrUnexpectedEOF) {
		t.Fatalf("aborted response: %q, %v", res.body, res.bodyErr)
	}
	if !cl.closed() {
		t.Error("connection open after an abort")
	}
	if s := ts.log.String(); s != "" {
		t.Errorf("an abort was logged: %s", s)
	}
}

// TestPanic: any other panic is logged and closes the connection; the
// server goes on serving.
func TestPanic(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/boom" {
			panic("boom in the handler")
		}
		echo(w, r)
	}), Config{})
	cl := ts.dial(t)
	cl.send(get("/boom"))
	if !cl.closed() {
		t.Fatal("connection open after a panic")
	}
	if s := ts.log.String(); !contains(s, "boom in the handler") || !contains(s, "server_test.go") {
		t.Errorf("log %q", s)
	}
	cl = ts.dial(t)
	cl.send(get("/ok"))
	cl.read("GET").want(t, 200, "GET /ok ")
}

// TestReadHeaderTimeout: a head that does not complete in time is answered
// 408 and closed; a connection that sends nothing is closed silently.
func TestReadHeaderTimeout(t *testing.T) {
	ts := startServer(t, echo, Config{ReadHeaderTimeout: 100 * time.Millisecond})
	cl := ts.dial(t)
	cl.send("GET / HTTP/1.1\r\nHost: a\r\n")
	res := cl.read("GET")
	if res.StatusCode != 408 || !contains(res.body, "request_timeout") || !cl.closed() {
		t.Fatalf("slow head: %d %q", res.StatusCode, res.body)
	}
	cl = ts.dial(t)
	if !cl.closed() {
		t.Fatal("silent connection kept")
	}
}

// TestBodyTimeout: a body that stalls fails the handler's read with
// request_timeout, and the connection closes after the response.
func TestBodyTimeout(t *testing.T) {
	got := make(chan error, 1)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		got <- err
		w.WriteHeader(failure.KindOf(err).Status())
	}), Config{BodyTimeout: 100 * time.Millisecond})
	cl := ts.dial(t)
	cl.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
	res := cl.read("POST")
	if err := <-got; failure.KindOf(err) != failure.RequestTimeout {
		t.Fatalf("body read error %v", err)
	}
	if res.StatusCode != 408 || !cl.closed() {
		t.Fatalf("status %d", res.StatusCode)
	}
}

// TestBodyErrors: bad chunking is client_body_invalid; a client that
// closes mid-body is client_canceled, and the context is cancelled.
func TestBodyErrors(t *testing.T) {
	type outcome struct {
		err      error
		canceled bool
	}
	got := make(chan outcome, 1)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		got <- outcome{err, r.Context().Err() != nil}
		w.WriteHeader(400)
	}), Config{})
	for _, tc := range []struct{ body, kind string }{
		{"5\r\nhello\n0\r\n\r\n", "client_body_invalid"},
		{"5\r\nhelloXX\r\n0\r\n\r\n", "client_body_invalid"},
		{"zz\r\n", "client_body_invalid"},
		{"5 \r\nhello\r\n0\r\n\r\n", "client_body_invalid"},
		{"5;" + strings.Repeat("e", maxChunkLine) + "\r\nhello\r\n0\r\n\r\n", "client_body_invalid"},
		{"0\r\nBad Trailer: x\r\n\r\n", "client_body_invalid"},
		{"0\r\nX: a\x00\r\n\r\n", "client_body_invalid"},
		{"10000000000000000\r\n", "client_body_invalid"},
	} {
		cl := ts.dial(t)
		cl.send("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + tc.body)
		res := cl.read("POST")
		o := <-got
		if failure.KindOf(o.err).String() != tc.kind || res.StatusCode != 400 || !cl.closed() {
			t.Errorf("body %q: %v, status %d", tc.body, o.err, res.StatusCode)
		}
	}
	// Extensions within the limit are fine.
	cl := ts.dial(t)
	cl.send("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;" + strings.Repeat("e", maxChunkLine-2) + "\r\nhello\r\n0\r\nX-T: 1\r\n\r\n")
	cl.read("POST")
	if o := <-got; o.err != nil {
		t.Errorf("extensions at the limit: %v", o.err)
	}

	cl = ts.dial(t)
	cl.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")
	cl.c.(*net.TCPConn).CloseWrite()
	o := <-got
	if failure.KindOf(o.err) != failure.ClientCanceled || !errors.Is(o.err, io.ErrUnexpectedEOF) || !o.canceled {
		t.Fatalf("client gone mid-body: %v, context cancelled %v", o.err, o.canceled)
	}
}

// TestIdleTimeout: an idle keep-alive connection is closed silently.
func TestIdleTimeout(t *testing.T) {
	for _, idle := range []time.Duration{hotIdle / 2, 3 * hotIdle} {
		ts := startServer(t, echo, Config{IdleTimeout: idle})
		cl := ts.dial(t)
		cl.send(get("/"))
		cl.read("GET").want(t, 200, "GET / ")
		if !cl.closed() {
			t.Fatalf("idle %v: connection kept", idle)
		}
	}
}

// TestWriteTimeout: a client that never reads is cut off: the handler's
// write fails and the context is cancelled.
func TestWriteTimeout(t *testing.T) {
	got := make(chan error, 1)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 64<<10)
		var err error
		// Bounded: far more than the socket buffers hold.
		for range 16 << 10 {
			if _, err = w.Write(chunk); err != nil {
				break
			}
		}
		if r.Context().Err() == nil {
			err = errors.New("context not cancelled")
		}
		got <- err
	}), Config{WriteTimeout: 100 * time.Millisecond})
	cl := ts.dial(t)
	cl.c.(*net.TCPConn).SetReadBuffer(4096)
	cl.send(get("/"))
	if err := <-got; !isTimeout(err) {
		t.Fatalf("handler's write: %v", err)
	}
}

// TestShutdown: idle connections close at once, busy ones after their
// response, which says Connection: close; new connections are refused.
func TestShutdown(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- struct{}{}
			<-release
		}
		echo(w, r)
	}), Config{})
	idle := ts.dial(t)
	idle.send(get("/"))
	idle.read("GET").want(t, 200, "GET / ")
	busy := ts.dial(t)
	busy.send(get("/slow"))
	<-entered

	done := make(chan error, 1)
	go func() { done <- ts.s.Shutdown(context.Background()) }()
	if !idle.closed() {
		t.Fatal("idle connection kept during shutdown")
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned before the busy connection finished: %v", err)
	default:
	}
	close(release)
	res := busy.read("GET")
	res.want(t, 200, "GET /slow ")
	if !res.Close || !busy.closed() {
		t.Fatalf("busy connection after its response: %v", res.Header)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	late := ts.dial(t)
	late.send(get("/"))
	if !late.closed() {
		t.Fatal("connection served after Shutdown")
	}
}

// TestShutdownDeadline: connections still busy when the context ends are
// closed, their contexts cancelled.
func TestShutdownDeadline(t *testing.T) {
	canceled := make(chan bool, 1)
	entered := make(chan struct{}, 1)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-r.Context().Done():
			canceled <- true
		case <-time.After(testWait):
			canceled <- false
		}
	}), Config{})
	cl := ts.dial(t)
	cl.send(get("/"))
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := ts.s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	if !<-canceled {
		t.Fatal("handler's context not cancelled")
	}
}

// TestRefusals: refused requests are rendered by Reject with what was
// parsed, the connection closes, and the next connection is served.
func TestRefusals(t *testing.T) {
	type seen struct {
		kind                      failure.Kind
		method, uri, host, remote string
		urlNil                    bool
		accept                    string
	}
	got := make(chan seen, 1)
	ts := startServer(t, echo, Config{MaxHeaderFields: 3}, func(s *Server) {
		s.Reject = func(w http.ResponseWriter, r *http.Request, fe *failure.Error) {
			got <- seen{fe.Kind, r.Method, r.RequestURI, r.Host, r.RemoteAddr, r.URL == nil, r.Header.Get("Accept")}
			w.Header().Set("Content-Length", "7")
			w.WriteHeader(fe.Kind.Status())
			io.WriteString(w, "refused")
		}
	})
	for _, tc := range []struct {
		raw    string
		status int
		want   seen
	}{
		{"GET /a%zz HTTP/1.1\r\nHost: h\r\nAccept: x/y\r\n\r\n", 400, seen{failure.RequestMalformed, "GET", "/a%zz", "h", "", true, "x/y"}},
		{"GET / HTTP/1.1\r\nAccept: x/y\r\n\r\n", 400, seen{failure.RequestHostInvalid, "GET", "/", "", "", false, "x/y"}},
		{"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 431, seen{failure.RequestHeaderTooLarge, "GET", "/", "h", "", true, ""}},
		{"GET / HTTP/3.0\r\n\r\n", 505, seen{failure.RequestVersionUnsupported, "", "", "", "", true, ""}},
		{"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", 501, seen{failure.MethodNotSupported, "CONNECT", "h:443", "h:443", "", true, ""}},
		{"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, seen{failure.RequestCodingUnsupported, "POST", "/", "h", "", false, ""}},
	} {
		cl := ts.dial(t)
		cl.send(tc.raw)
		res := cl.read("GET")
		res.want(t, tc.status, "refused")
		if !res.Close || !cl.closed() {
			t.Errorf("%q: connection kept: %v", tc.raw, res.Header)
		}
		s := <-got
		tc.want.remote = cl.c.LocalAddr().String()
		if s != tc.want {
			t.Errorf("%q: Reject saw %+v, want %+v", tc.raw, s, tc.want)
		}
		cl = ts.dial(t)
		cl.send(get("/after"))
		cl.read("GET").want(t, 200, "GET /after ")
	}
}

// TestDefaultReject: without Reject, refusals are candor's problem
// documents with a fresh request id.
func TestDefaultReject(t *testing.T) {
	ts := startServer(t, echo, Config{})
	cl := ts.dial(t)
	cl.send("GET / HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n")
	res := cl.read("GET")
	if res.StatusCode != 400 || !contains(res.body, `"cause":"request_malformed"`) || len(res.Header.Get("X-Request-Id")) != 32 ||
		res.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("%d %v %s", res.StatusCode, res.Header, res.body)
	}
}

// TestLargeHead: a head larger than the read buffer is read whole, up to
// the limits.
func TestLargeHead(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, itoa(len(r.Header.Get("Cookie")))+" "+itoa(len(r.URL.Path)))
	}), Config{})
	cl := ts.dial(t)
	path := "/" + strings.Repeat("p", 8000)
	cl.send("GET " + path + " HTTP/1.1\r\nHost: a\r\nCookie: " + strings.Repeat("c", 30000) + "\r\n\r\n")
	cl.read("GET").want(t, 200, "30000 8001")
	cl.send(get("/"))
	cl.read("GET").want(t, 200, "0 1")
	cl.send("GET /" + strings.Repeat("p", 9000) + " HTTP/1.1\r\nHost: a\r\n\r\n")
	if res := cl.read("GET"); res.StatusCode != 414 {
		t.Fatalf("status %d", res.StatusCode)
	}
}

// TestSetConfig: new limits apply to the requests that start after.
func TestSetConfig(t *testing.T) {
	ts := startServer(t, echo, Config{})
	cl := ts.dial(t)
	cl.send("GET /" + strings.Repeat("a", 100) + " HTTP/1.1\r\nHost: a\r\n\r\n")
	if res := cl.read("GET"); res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	ts.s.SetConfig(Config{MaxRequestLine: 50})
	cl.send("GET /" + strings.Repeat("a", 100) + " HTTP/1.1\r\nHost: a\r\n\r\n")
	if res := cl.read("GET"); res.StatusCode != 414 {
		t.Fatalf("status %d after SetConfig", res.StatusCode)
	}
}

// TestH2C: a connection that opens with the HTTP/2 preface goes to H2C,
// which reads the preface again; without H2C it gets 505.
func TestH2C(t *testing.T) {
	got := make(chan string, 1)
	ts := startServer(t, echo, Config{}, func(s *Server) {
		s.H2C = func(c net.Conn) {
			b := make([]byte, len(h2Preface)+5)
			_, err := io.ReadFull(c, b)
			if err != nil {
				got <- err.Error()
				return
			}
			got <- string(b)
			io.WriteString(c, "h2 here")
			c.Close()
		}
	})
	cl := ts.dial(t)
	cl.send(string(h2Preface) + "frame")
	if s := <-got; s != string(h2Preface)+"frame" {
		t.Fatalf("H2C read %q", s)
	}
	if b, _ := io.ReadAll(cl.br); string(b) != "h2 here" {
		t.Fatalf("client read %q", b)
	}

	ts = startServer(t, echo, Config{})
	cl = ts.dial(t)
	cl.send(string(h2Preface))
	if res := cl.read("GET"); res.StatusCode != 505 || !cl.closed() {
		t.Fatalf("preface without H2C: %d", res.StatusCode)
	}
}

// TestClientGone: the context of a request whose client left while the
// handler runs is cancelled.
func TestClientGone(t *testing.T) {
	canceled := make(chan bool, 1)
	entered := make(chan struct{}, 1)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-r.Context().Done():
			canceled <- true
		case <-time.After(testWait):
			canceled <- false
		}
	}), Config{})
	for _, req := range []string{get("/"), "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"} {
		cl := ts.dial(t)
		cl.send(req)
		<-entered
		cl.c.Close()
		if !<-canceled {
			t.Fatalf("%q: context not cancelled when the client left", req)
		}
	}
}

// TestManyConnections: connections served concurrently stay independent.
func TestManyConnections(t *testing.T) {
	ts := startServer(t, echo, Config{})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := ts.dial(t)
			for j := range 20 {
				p := "/" + itoa(i) + "/" + itoa(j)
				cl.send("POST " + p + " HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx")
				res, err := http.ReadResponse(cl.br, nil)
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(res.Body)
				if string(b) != "POST "+p+" x" {
					t.Errorf("got %q", b)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestIdlePaths: an idle connection waits in the poller (no goroutine) or,
// without it, on a small goroutine; either way it serves its next request,
// times out, closes for Shutdown, and ends when the client leaves.
func TestIdlePaths(t *testing.T) {
	for _, noPoller := range []bool{false, true} {
		t.Run(map[bool]string{false: "poller", true: "goroutine"}[noPoller], func(t *testing.T) {
			opt := func(s *Server) { s.noPoller = noPoller }
			ts := startServer(t, echo, Config{IdleTimeout: time.Minute}, opt)
			cl := ts.dial(t)
			for i := range 3 {
				cl.send(get("/" + itoa(i)))
				cl.read("GET").want(t, 200, "GET /"+itoa(i)+" ")
				time.Sleep(2 * hotIdle) // idle past the hot wait
			}
			// A client that leaves while idle ends the connection.
			cl.c.Close()
			waitConns(t, ts.s, 0)

			// Idle timeout, from the poller's deadlines or the read
			// deadline.
			short := startServer(t, echo, Config{IdleTimeout: 3 * hotIdle}, opt)
			cl = short.dial(t)
			cl.send(get("/"))
			cl.read("GET").want(t, 200, "GET / ")
			if !cl.closed() {
				t.Fatal("idle connection kept past its timeout")
			}
			// A new connection that sends nothing waits idle, then is
			// served.
			cl = ts.dial(t)
			time.Sleep(2 * hotIdle)
			cl.send(get("/late"))
			cl.read("GET").want(t, 200, "GET /late ")

			// Shutdown closes parked connections at once.
			time.Sleep(2 * hotIdle)
			if err := ts.s.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if !cl.closed() {
				t.Fatal("parked connection kept by Shutdown")
			}
		})
	}
}

// TestServeConnAsync: done is called once the connection ended.
func TestServeConnAsync(t *testing.T) {
	s := &Server{Handler: echo}
	a, b := net.Pipe()
	done := make(chan struct{})
	s.ServeConnAsync(a, func() { close(done) })
	io.WriteString(b, get("/x"))
	buf := make([]byte, 4096)
	n, _ := b.Read(buf)
	if !strings.Contains(string(buf[:n]), "GET /x") {
		t.Fatalf("response %q", buf[:n])
	}
	b.Close()
	select {
	case <-done:
	case <-time.After(testWait):
		t.Fatal("done not called after the client left")
	}
}

// waitConns waits (bounded) until s serves n connections.
func waitConns(t *testing.T, s *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for s.Conns() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections, want %d", s.Conns(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTLSConn: a handshaken *tls.Conn is served with r.TLS set; idle, it
// waits on a goroutine (the poller cannot see TLS's own buffering) and
// serves the next request.
func TestTLSConn(t *testing.T) {
	cert := selfSigned(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan bool, 4)
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.TLS != nil && r.TLS.HandshakeComplete
		echo(w, r)
	})}
	defer s.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		tc := c.(*tls.Conn)
		if tc.Handshake() == nil {
			s.ServeConn(tc)
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testWait))
	cl := &client{t: t, c: c, br: bufio.NewReader(c)}
	for i := range 2 {
		cl.send(get("/" + itoa(i)))
		cl.read("GET").want(t, 200, "GET /"+itoa(i)+" ")
		if !<-got {
			t.Fatal("r.TLS not set")
		}
		time.Sleep(2 * hotIdle)
	}
}

// selfSigned makes a certificate for 127.0.0.1.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
