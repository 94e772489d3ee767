package listener_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"candor/internal/h1"
	"candor/internal/listener"
)

const testWait = 10 * time.Second

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(testWait))
	t.Cleanup(func() { c.Close() })
	return c
}

func roundTrip(t *testing.T, c net.Conn, br *bufio.Reader) int {
	t.Helper()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	return res.StatusCode
}

// TestMaxConnections: the limit counts open connections (idle ones too)
// over every listener sharing it; beyond it, connections wait unaccepted
// until one closes.
func TestMaxConnections(t *testing.T) {
	var served atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.Header().Set("Content-Length", "0")
	})
	limit := listener.NewLimit(2)
	a, err := listener.ListenConns("127.0.0.1:0", limit, &h1.Server{Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := listener.ListenConns("127.0.0.1:0", limit, &h1.Server{Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	c1 := dial(t, a.Addr())
	roundTrip(t, c1, bufio.NewReader(c1))
	c2 := dial(t, b.Addr())
	roundTrip(t, c2, bufio.NewReader(c2))
	if n := limit.Open(); n != 2 {
		t.Fatalf("%d open, want 2", n)
	}
	// The third connection is in the kernel's queue: its request waits.
	c3 := dial(t, a.Addr())
	io.WriteString(c3, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	if n := served.Load(); n != 2 {
		t.Fatalf("%d requests served past the limit of 2 connections", n)
	}
	c1.Close()
	res, err := http.ReadResponse(bufio.NewReader(c3), nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("%v %v", res, err)
	}
	// Raising the limit lets a fourth in without a close.
	limit.SetMax(3)
	c4 := dial(t, b.Addr())
	if s := roundTrip(t, c4, bufio.NewReader(c4)); s != 200 {
		t.Fatalf("status %d", s)
	}
}

// TestShutdown: Shutdown stops accepting and waits for the connections,
// Close ends them.
func TestShutdown(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		w.Header().Set("Content-Length", "0")
	})
	limit := listener.NewLimit(0)
	srv, err := listener.ListenConns("127.0.0.1:0", limit, &h1.Server{Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, srv.Addr())
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	<-entered
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(context.Background()) }()
	// Stopped accepting: a new connection is refused (bounded wait for
	// the listener to close).
	for deadline := time.Now().Add(testWait); ; {
		nc, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			break
		}
		nc.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting after Shutdown")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("busy connection's response: %v %v", res, err)
	}
	// Then it is closed (at once when its response says so, or as idle).
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("busy connection after its response: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := limit.Open(); n != 0 {
		t.Fatalf("%d slots held after Shutdown", n)
	}
}

// TestAdminListen: the net/http admin listener shuts down cleanly.
func TestAdminListen(t *testing.T) {
	srv, err := listener.Listen("127.0.0.1:0", http.NotFoundHandler(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, srv.Addr())
	if s := roundTrip(t, c, bufio.NewReader(c)); s != 404 {
		t.Fatalf("status %d", s)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// blockingServer is a ConnServer without ServeConnAsync: the accept loop
// gives each connection a goroutine.
type blockingServer struct{ *h1.Server }

func (b blockingServer) ServeConn(c net.Conn) { b.Server.ServeConn(c) }

// TestBlockingConnServer: a plain ConnServer holds its slot until
// ServeConn returns.
func TestBlockingConnServer(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Header().Set("Content-Length", "0") })
	limit := listener.NewLimit(1)
	srv := listener.NewServer(mustListen(t), limit, struct{ listener.ConnServer }{blockingServer{&h1.Server{Handler: h}}})
	defer srv.Close()
	c := dial(t, srv.Addr())
	if s := roundTrip(t, c, bufio.NewReader(c)); s != 200 {
		t.Fatalf("status %d", s)
	}
	c.Close()
	c2 := dial(t, srv.Addr())
	if s := roundTrip(t, c2, bufio.NewReader(c2)); s != 200 {
		t.Fatalf("status %d", s)
	}
}

func mustListen(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
