// Package listener runs candor's listeners: the accept loop shared by the
// gateway's listeners (plain HTTP/1.1 through package h1, and TLS), with
// one connection limit over all of them, and the admin listener (net/http).
package listener

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Admin server timeouts and limits (the gateway's come from the
// configuration's server section). They guard against clients that hold
// connections open without sending (slowloris) and against oversized
// heads.
const (
	// ReadHeaderTimeout bounds the time to read a request head.
	ReadHeaderTimeout = 10 * time.Second
	// IdleTimeout bounds an idle keep-alive client connection.
	IdleTimeout = 75 * time.Second
	// MaxHeaderBytes bounds a request head.
	MaxHeaderBytes = 64 << 10
)

// Server is one listening server.
type Server struct {
	ln       net.Listener
	shutdown func(context.Context) error
	close    func() error
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{} // closed when the accept loop returned
	err      error         // the accept loop's error, set before done closes
}

// Listen binds addr and starts serving h with net/http in the background
// (the admin listener).
func Listen(addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	s := &Server{ln: ln, shutdown: srv.Shutdown, close: srv.Close, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
			err = nil // stopped: Shutdown or Close closed the listener
		}
		s.err = err
		close(s.done)
	}()
	return s, nil
}

// ConnServer serves connections that an accept loop hands it: h1.Server,
// and the TLS listener's terminator.
type ConnServer interface {
	// ServeConn serves c until it ends.
	ServeConn(c net.Conn)
	// Shutdown ends the connections gracefully, waiting until ctx is done.
	Shutdown(ctx context.Context) error
	// Close ends the connections at once.
	Close() error
}

// ListenConns binds addr and serves its connections with cs, under limit
// (nil: no limit), in the background.
func ListenConns(addr string, limit *Limit, cs ConnServer) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return NewServer(ln, limit, cs), nil
}

// AsyncConnServer is a ConnServer that can serve a connection without
// the caller's goroutine waiting for it (h1.Server: an idle connection
// then costs no goroutine).
type AsyncConnServer interface {
	ConnServer
	// ServeConnAsync serves c and calls done when it ended.
	ServeConnAsync(c net.Conn, done func())
}

// NewServer serves ln's connections with cs, under limit (nil: no limit),
// in the background.
func NewServer(ln net.Listener, limit *Limit, cs ConnServer) *Server {
	s := &Server{ln: ln, shutdown: cs.Shutdown, close: cs.Close, stop: make(chan struct{}), done: make(chan struct{})}
	start := func(c net.Conn, release func()) {
		go func() {
			defer release()
			cs.ServeConn(c)
		}()
	}
	if acs, ok := cs.(AsyncConnServer); ok {
		start = acs.ServeConnAsync
	}
	go func() {
		s.err = serve(ln, limit, start, s.stop)
		close(s.done)
	}()
	return s
}

// Addr returns the bound address (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// stopAccepting ends the accept loop and waits for it.
func (s *Server) stopAccepting() error {
	s.stopOnce.Do(func() {
		close(s.stop)
		s.ln.Close()
	})
	<-s.done
	return s.err
}

// Shutdown stops accepting, waits for in-flight requests until ctx is done,
// then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	serr := s.stopAccepting()
	err := s.shutdown(ctx)
	if err != nil {
		s.close()
	}
	if err == nil {
		err = serr
	}
	return err
}

// Close closes the server at once.
func (s *Server) Close() error {
	serr := s.stopAccepting()
	err := s.close()
	if err == nil {
		err = serr
	}
	return err
}

// Serve accepts connections from ln and calls serve for each on its own
// goroutine, until stop is closed (and ln with it: the caller closes both)
// or ln fails for good. Each connection holds a slot of limit (nil: no
// limit) until serve returns; when all are taken, Serve holds the
// connection it accepted until a slot frees and accepts no more, so that
// new connections wait in the kernel's accept queue. Temporary
// accept errors (out of file descriptors) are retried with a back-off, as
// net/http does. It returns nil when stopped.
func Serve(ln net.Listener, limit *Limit, serveConn func(net.Conn), stop <-chan struct{}) error {
	return serve(ln, limit, func(c net.Conn, release func()) {
		go func() {
			defer release()
			serveConn(c)
		}()
	}, stop)
}

// serve is Serve with start, which serves c (without blocking) and calls
// release when it ended.
func serve(ln net.Listener, limit *Limit, start func(c net.Conn, release func()), stop <-chan struct{}) error {
	var delay time.Duration
	// Runs until stop is closed or ln fails for good.
	for {
		c, err := ln.Accept()
		if err != nil {
			select {
			case <-stop:
				return nil
			default:
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				t := time.NewTimer(delay)
				select {
				case <-stop:
					t.Stop()
					return nil
				case <-t.C:
				}
				continue
			}
			return err
		}
		delay = 0
		// The slot is taken after the accept, not before: with one limit
		// over several listeners, a slot taken by a listener that then
		// waits in Accept would be lost to one whose clients wait.
		if !limit.acquire(stop) {
			c.Close()
			return nil
		}
		start(c, limit.release)
	}
}

// isTemporary reports accept errors worth retrying: running out of file
// descriptors or buffers, an aborted handshake.
func isTemporary(err error) bool {
	type temporary interface{ Temporary() bool }
	var te temporary
	return errors.As(err, &te) && te.Temporary()
}

// Limit bounds the connections open at once over every listener that
// shares it (server.max_connections). It is written here rather than taken
// from golang.org/x/net/netutil.LimitListener, whose limit belongs to one
// listener and is fixed: candor shares one limit between its plain and TLS
// listeners, and a reload may change it.
type Limit struct {
	mu   sync.Mutex
	max  int
	n    int
	wake chan struct{} // closed (and replaced) when a slot may have freed
}

// NewLimit returns a limit of max connections (max <= 0: no limit).
func NewLimit(max int) *Limit {
	return &Limit{max: max, wake: make(chan struct{})}
}

// SetMax changes the limit; connections above a lowered one stay, and new
// ones wait until the count is below it.
func (l *Limit) SetMax(max int) {
	l.mu.Lock()
	l.max = max
	l.broadcast()
	l.mu.Unlock()
}

// Open returns the number of connections holding a slot.
func (l *Limit) Open() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// acquire takes a slot, waiting for one until stop is closed (false).
func (l *Limit) acquire(stop <-chan struct{}) bool {
	if l == nil {
		select {
		case <-stop:
			return false
		default:
			return true
		}
	}
	// Each round waits for a release; stop ends the wait.
	for {
		l.mu.Lock()
		if l.max <= 0 || l.n < l.max {
			l.n++
			l.mu.Unlock()
			return true
		}
		wake := l.wake
		l.mu.Unlock()
		select {
		case <-stop:
			return false
		case <-wake:
		}
	}
}

func (l *Limit) release() {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.n--
	if l.max > 0 && l.n+1 >= l.max {
		// Someone may wait for this slot.
		l.broadcast()
	}
	l.mu.Unlock()
}

// broadcast wakes the waiters; l.mu is held. A release calls it only when
// the limit was reached, so that it costs no allocation while the limit
// is far.
func (l *Limit) broadcast() {
	close(l.wake)
	l.wake = make(chan struct{})
}
