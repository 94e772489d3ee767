package h1

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestStaleBodyReadNeverDesyncs: a handler answers early while a goroutine
// it started is still reading the request body (as an HTTP/2 upstream
// transport does while it sends the body), then returns. Whatever the
// timing, the bytes that follow on the connection (the rest of the body,
// then a pipelined request) are never parsed as anything but that
// request: the client gets the next request's own response, or the
// connection closes. Under -race it also checks that the stale read and
// the server never touch the same memory unfenced.
func TestStaleBodyReadNeverDesyncs(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	readerDone := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.RequestURI)
		mu.Unlock()
		if r.URL.Path != "/upload" {
			io.WriteString(w, "second-ok")
			return
		}
		first := make(chan struct{})
		go func() {
			defer close(readerDone)
			buf := make([]byte, 64)
			for i := 0; ; i++ {
				_, err := r.Body.Read(buf)
				if i == 0 {
					close(first)
				}
				if err != nil {
					return
				}
			}
		}()
		<-first // the reader has the first bytes and reads on
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, "no")
	})
	ts := startServer(t, h, Config{BodyTimeout: 3 * time.Second})
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write([]byte("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\n\r\n0123456789")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("first response: %v", err)
	}
	io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("first response %d, want 401", resp.StatusCode)
	}
	// The rest of the body, then a pipelined request. A closed connection
	// may refuse them: that is one of the allowed outcomes.
	nc.Write([]byte("ABCDEFGHIJGET /second HTTP/1.1\r\nHost: a\r\n\r\n"))
	if resp, err := http.ReadResponse(br, nil); err == nil {
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "second-ok" {
			t.Errorf("after the early answer: %d %q, want the second request's 200 or a closed connection", resp.StatusCode, b)
		}
	}
	select {
	case <-readerDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the stale body read never ended")
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range seen {
		if s != "POST /upload" && s != "GET /second" {
			t.Errorf("the handler saw %q: bytes of the connection were parsed out of step", s)
		}
	}
}
