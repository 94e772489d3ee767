// Package h1 is candor's HTTP/1.1 downstream server: it reads requests
// from client connections with a strict parser (candor's request decision
// table, parse.go), enforces the server's limits and
// timeouts, and runs the handler with net/http's types (http.Request,
// http.ResponseWriter, http.Flusher, http.Hijacker), so that the proxy
// handler serves HTTP/1.1 here and HTTP/2 through net/http alike.
//
// Why not net/http's server: it accepts what candor must refuse (bare LF,
// ambiguous framing, invalid Host), reports refusals as plain-text 400s
// of its own instead of candor's causes, and costs about 17 allocations,
// a background-read goroutine and extra syscalls per request. This server
// reuses one http.Request, URL, Header map and response per connection and
// allocates one string per request head; it reads each request with one
// read(2) and writes each response with one write(2) in the common case.
//
// Keep-alive connections that stay idle give their buffers and request
// state back to pools and wait without a goroutine of their own (see conn
// and idlePoller), so that many idle connections cost little memory.
//
// Differences from net/http's server that a handler may notice:
//   - The *http.Request, its URL and Header, and the ResponseWriter's
//     Header are reused by the next request of the connection: a handler
//     must not keep them after it returns (copy what it needs).
//   - r.Context() is shared by the requests a connection serves in a row
//     (until it goes idle): it is cancelled when the client is found gone
//     (a write fails, a body read finds the connection closed, or the
//     watcher sees the peer's FIN or reset while the handler runs), when
//     the server is closed, and when the connection goes idle or ends;
//     not when each handler returns.
//   - No Content-Type is ever sniffed or added, and no Content-Length is
//     computed for a body: a response with Content-Length in its header is
//     sent with it; any other response with a body is chunked (HTTP/1.1)
//     or delimited by the connection's close (HTTP/1.0). A handler that
//     writes nothing gets Content-Length: 0.
//   - Expect is consumed by the server (100-continue is answered on the
//     first body read) and never appears in r.Header; like Host,
//     Transfer-Encoding is not in r.Header either.
package h1

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"candor/internal/failure"
	"candor/internal/respond"
)

// Config holds the server's limits and timeouts; a zero field takes the
// default of the configuration's server section.
type Config struct {
	// MaxRequestLine bounds the request line (CRLF excluded): 414.
	MaxRequestLine int
	// MaxHeaderBytes bounds the header section (field lines with their
	// CRLFs): 431. It bounds a chunked body's trailer section too.
	MaxHeaderBytes int
	// MaxHeaderFields bounds the number of header fields: 431.
	MaxHeaderFields int
	// ReadHeaderTimeout bounds the time from a request's first byte to
	// the end of its head (and, on a new connection, from the accept to
	// the first byte): 408, or a silent close when nothing arrived.
	ReadHeaderTimeout time.Duration
	// BodyTimeout bounds each wait for request body bytes: the body read
	// fails with request_timeout.
	BodyTimeout time.Duration
	// WriteTimeout bounds each wait for the client to take response
	// bytes (enforced within an eighth more): the connection is cut off.
	WriteTimeout time.Duration
	// IdleTimeout bounds the wait for the next request of a keep-alive
	// connection: it is closed silently.
	IdleTimeout time.Duration
}

// Defaults, as config.Default* (package config does not depend on h1).
const (
	DefaultMaxRequestLine    = 8 << 10
	DefaultMaxHeaderBytes    = 32 << 10
	DefaultMaxHeaderFields   = 100
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultBodyTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 75 * time.Second
)

// settings is a Config with defaults applied.
type settings struct {
	Config
	lim limits
}

func newSettings(c Config) *settings {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxRequestLine, DefaultMaxRequestLine)
	def(&c.MaxHeaderBytes, DefaultMaxHeaderBytes)
	def(&c.MaxHeaderFields, DefaultMaxHeaderFields)
	defd(&c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	defd(&c.BodyTimeout, DefaultBodyTimeout)
	defd(&c.WriteTimeout, DefaultWriteTimeout)
	defd(&c.IdleTimeout, DefaultIdleTimeout)
	return &settings{Config: c, lim: limits{line: c.MaxRequestLine, header: c.MaxHeaderBytes, fields: c.MaxHeaderFields}}
}

// Server serves HTTP/1.1 connections. Set its fields before the first
// ServeConn; SetConfig may be called at any time.
type Server struct {
	Handler http.Handler
	// Reject renders a request refused by the server before the handler
	// (fe's Kind is one of the request_* causes or client_body_invalid).
	// r holds what was parsed (never nil; Header non-nil; RemoteAddr
	// set; URL nil when the target was not parsed). Nil: a default that
	// renders respond.Problem with a fresh request id. The connection is
	// closed after the response.
	Reject func(w http.ResponseWriter, r *http.Request, fe *failure.Error)
	// H2C, when non-nil, takes over a connection that opens with the
	// HTTP/2 preface; the conn it gets replays the bytes already read.
	// Nil: such a connection gets 505.
	H2C func(c net.Conn)
	// Log receives handler panics (other than http.ErrAbortHandler);
	// nil is slog.Default().
	Log *slog.Logger

	cfg atomic.Pointer[settings]

	// shutdown is set by Shutdown: idle connections are closed, busy
	// ones after their current response.
	shutdown atomic.Bool

	// noPoller keeps idle connections on goroutines (tests of that path).
	noPoller bool

	mu      sync.Mutex
	conns   map[*conn]struct{}
	closed  bool
	watcher bool // the client-gone watcher runs
}

// SetConfig sets the limits and timeouts: requests that start from now on
// use them.
func (s *Server) SetConfig(c Config) { s.cfg.Store(newSettings(c)) }

// settings returns the settings in force.
func (s *Server) settings() *settings {
	if st := s.cfg.Load(); st != nil {
		return st
	}
	st := newSettings(Config{})
	s.cfg.CompareAndSwap(nil, st)
	return s.cfg.Load()
}

func (s *Server) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// ServeConn serves c until the connection ends (or is hijacked and the
// handler returns). c may be a handshaken *tls.Conn: r.TLS is then set.
// It closes c, unless a handler hijacked it.
func (s *Server) ServeConn(c net.Conn) {
	var wg sync.WaitGroup
	wg.Add(1)
	s.start(c, wg.Done)
	wg.Wait()
}

// ServeConnAsync serves c like ServeConn, but returns at once; done is
// called when the connection ended (for a hijacked one: when its handler
// returned). An idle connection served this way costs no goroutine (on
// Linux, for connections that are not TLS), which ServeConn's waiting
// caller would.
func (s *Server) ServeConnAsync(c net.Conn, done func()) {
	if done == nil {
		done = func() {}
	}
	s.start(c, done)
}

// track registers c; false when the server no longer takes connections.
func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.shutdown.Load() {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
	}
	s.conns[c] = struct{}{}
	if !s.watcher {
		s.watcher = true
		go s.watch()
	}
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Shutdown stops taking connections, closes the idle ones now and the
// busy ones after their current response (which says Connection: close),
// and waits for them until ctx is done; then it closes what is left and
// returns ctx's error. Hijacked connections are the hijacker's and are not
// waited for.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdown.Store(true)
	wait := time.Millisecond
	// Bounded by ctx; each round closes the connections that became idle.
	for {
		if s.closeIdle() == 0 {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			s.Close()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// closeIdle closes the idle connections and returns how many connections
// are left.
func (s *Server) closeIdle() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.CompareAndSwap(stateIdle, stateClosed) {
			c.closeIdle()
		}
	}
	return len(s.conns)
}

// Close closes every connection at once (their contexts are cancelled)
// and takes no more.
func (s *Server) Close() error {
	s.shutdown.Store(true)
	s.mu.Lock()
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.state.Store(stateClosed)
		c.closeIdle()
		c.cancelCtx()
	}
	return nil
}

// Conns returns the number of connections being served (hijacked ones
// excluded).
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// reject renders a refusal.
func (s *Server) reject(w http.ResponseWriter, r *http.Request, fe *failure.Error) {
	if s.Reject != nil {
		s.Reject(w, r, fe)
		return
	}
	respond.Problem(w, r, fe.Kind, respond.NewRequestID())
}

// The client-gone watcher. A handler that runs for a while (watchAfter)
// with its request body read is checked every watchEvery: when the
// client's side of the TCP connection is closed (its FIN or a reset
// arrived; see peerGone) the connection's context is cancelled, so that
// the proxy abandons the upstream attempt (client_canceled, 499). The
// client's departure is thus noticed between watchAfter and
// watchAfter+2*watchEvery after the handler started, or within about
// 2*watchEvery later on. A handler that writes notices sooner: a failed
// write cancels the context at once.
//
// One goroutine per server scans the connections, so that a request
// costs no goroutine, timer or syscall of its own for this (net/http
// starts a background read per request).
const (
	watchAfter = 100 * time.Millisecond
	watchEvery = 100 * time.Millisecond
)

func (s *Server) watch() {
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	var due []*conn
	// Runs until the server has no connections left.
	for range t.C {
		now := time.Now().UnixNano()
		s.mu.Lock()
		if len(s.conns) == 0 {
			s.watcher = false
			s.mu.Unlock()
			return
		}
		due = due[:0]
		for c := range s.conns {
			if st := c.watchFrom.Load(); st != 0 && now-st >= int64(watchAfter) {
				due = append(due, c)
			}
		}
		s.mu.Unlock()
		for _, c := range due {
			c.checkGone()
		}
		clear(due)
	}
}

// dateLine caches the Date field of the current second.
type dateLine struct {
	sec  int64
	line []byte // "Date: Mon, 02 Jan 2006 15:04:05 GMT\r\n"
}

var date atomic.Pointer[dateLine]

// appendDate appends the Date field line for now (RFC 9110 §6.6.1).
func appendDate(b []byte, now time.Time) []byte {
	sec := now.Unix()
	d := date.Load()
	if d == nil || d.sec != sec {
		line := make([]byte, 0, 40)
		line = append(line, "Date: "...)
		line = now.UTC().AppendFormat(line, http.TimeFormat)
		line = append(line, "\r\n"...)
		d = &dateLine{sec: sec, line: line}
		date.Store(d)
	}
	return append(b, d.line...)
}
