package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testWait bounds every wait of a test: no test depends on timing, but none
// hangs either.
const testWait = 10 * time.Second

// logBuffer collects log output safely.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testServer is a Server on a loopback listener with its own accept loop.
type testServer struct {
	s    *Server
	ln   net.Listener
	addr string
	log  *logBuffer
	wg   sync.WaitGroup
}

// startServer serves h with cfg; opts adjust the Server before it starts.
func startServer(t testing.TB, h http.Handler, cfg Config, opts ...func(*Server)) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{ln: ln, addr: ln.Addr().String(), log: &logBuffer{}}
	ts.s = &Server{Handler: h, Log: slog.New(slog.NewTextHandler(ts.log, nil))}
	ts.s.SetConfig(cfg)
	for _, o := range opts {
		o(ts.s)
	}
	ts.wg.Add(1)
	go func() {
		defer ts.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ts.wg.Add(1)
			go func() {
				defer ts.wg.Done()
				ts.s.ServeConn(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		ts.s.Close()
		done := make(chan struct{})
		go func() { ts.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(testWait):
			t.Error("connections still served after Close")
		}
	})
	return ts
}

// client is a raw client connection.
type client struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func (ts *testServer) dial(t testing.TB) *client {
	t.Helper()
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(testWait))
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

func (cl *client) send(s string) {
	cl.t.Helper()
	if _, err := io.WriteString(cl.c, s); err != nil {
		cl.t.Fatalf("write: %v", err)
	}
}

// result is a response read whole.
type result struct {
	*http.Response
	body    string
	bodyErr error
}

// read reads one response to a request of method.
func (cl *client) read(method string) *result {
	cl.t.Helper()
	resp, err := http.ReadResponse(cl.br, &http.Request{Method: method})
	if err != nil {
		cl.t.Fatalf("reading the response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	return &result{Response: resp, body: string(b), bodyErr: err}
}

// closed reports whether the server closed the connection: the next read
// finds the end (or a reset) with no byte.
func (cl *client) closed() bool {
	cl.t.Helper()
	var b [1]byte
	n, err := cl.br.Read(b[:])
	if n > 0 {
		cl.t.Errorf("unexpected byte %q after the response", b[:n])
		return false
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// wantStatus checks a result's status and body.
func (r *result) want(t testing.TB, status int, body string) {
	t.Helper()
	if r.StatusCode != status || r.body != body {
		t.Fatalf("got %d %q (%v), want %d %q", r.StatusCode, r.body, r.bodyErr, status, body)
	}
}

// echo answers with the request's method and path, and its body.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(500)
		return
	}
	out := r.Method + " " + r.URL.Path + " " + string(b)
	w.Header().Set("Content-Length", itoa(len(out)))
	io.WriteString(w, out)
})

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

func get(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: a\r\n\r\n" }

func contains(s, sub string) bool { return strings.Contains(s, sub) }
