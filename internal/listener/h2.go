package listener

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"candor/internal/config"
	"candor/internal/failure"
	"candor/internal/respond"
)

// HTTP/2 limits that are not configuration.
const (
	// H2MaxConcurrentStreams is the SETTINGS_MAX_CONCURRENT_STREAMS
	// candor advertises (RFC 9113 §6.5.2): the streams one client may
	// have open at once. 250 is x/net's default and more than browsers
	// open; it bounds the handler goroutines one connection can start.
	H2MaxConcurrentStreams = 250
	// h2PerFieldOverhead is what HTTP/2 adds to each field in its header
	// list size (RFC 9113 §6.5.2: name + value + 32 octets).
	h2PerFieldOverhead = 32
	// h2PseudoFields is the number of request pseudo-header fields
	// (:method, :scheme, :authority, :path; RFC 9113 §8.3.1).
	h2PseudoFields = 4
)

// Rejecter answers a request that the server refuses before routing (a
// limit the protocol library does not enforce itself); proxy.Handler
// implements it.
type Rejecter interface {
	Reject(w http.ResponseWriter, r *http.Request, fe *failure.Error)
}

// H2 serves HTTP/2 connections (RFC 9113) with golang.org/x/net/http2's
// server: connections that negotiated "h2" through TLS ALPN, and cleartext
// connections that opened with the HTTP/2 preface (h2c prior knowledge).
// One H2 belongs to one listener, so that draining the listener sends
// GOAWAY to its connections only.
//
// x/net's Server.ServeConn serves one connection that candor accepted and
// (for TLS) handshook itself; net/http only serves whole listeners, which
// would take the accept loop, the connection limit and the ALPN dispatch
// away from candor. x/net marks ServeConn deprecated in favour of
// net/http, but keeps it working (from Go 1.27 by wrapping net/http's own
// HTTP/2 server).
//
// ServeConn may be called from any number of goroutines; Update, Shutdown
// and Close may be called at any time.
type H2 struct {
	handler http.Handler
	log     *slog.Logger

	// closing is set when Shutdown begins: connections that start after
	// it are sent GOAWAY at once (see h2Gen.connState).
	closing atomic.Bool

	mu sync.Mutex
	// gen is the settings new connections get; gens counts the live
	// connections of every generation in use (a connection keeps the
	// settings it started with).
	gen   *h2Gen
	gens  map[*h2Gen]int
	conns map[net.Conn]struct{}
	// closed is set once Close ran: later connections are closed at once.
	closed bool
	// drained is closed when closing and the last connection ended.
	drained chan struct{}
}

// h2Gen is one generation of HTTP/2 settings: x/net reads its Server's
// fields while connections run, so a change of settings makes a new
// generation instead of writing to the fields.
type h2Gen struct {
	h      *H2
	sv     config.Server
	srv    *http2.Server
	base   *http.Server // never serves: carries net/http's settings and the shutdown hook
	reject Rejecter     // nil when the handler does not implement it
}

// NewH2 returns an HTTP/2 server for h with the limits and timeouts of sv.
func NewH2(h http.Handler, sv config.Server, log *slog.Logger) *H2 {
	s := &H2{handler: h, log: log, gens: map[*h2Gen]int{}, conns: map[net.Conn]struct{}{}, drained: make(chan struct{})}
	s.gen = s.newGen(sv)
	return s
}

// newGen builds the x/net server for sv.
func (s *H2) newGen(sv config.Server) *h2Gen {
	g := &h2Gen{h: s, sv: sv}
	g.reject, _ = s.handler.(Rejecter)
	g.base = &http.Server{
		Handler: g,
		// ReadTimeout and WriteTimeout stay 0: x/net applies them to a
		// whole stream, which would cut off long uploads and downloads.
		// candor's timeouts are per piece: write_timeout is
		// WriteByteTimeout below (a socket that does not drain) and
		// timedWriter (a flow-control window that stays shut),
		// body_timeout is timedBody.
		IdleTimeout:    sv.IdleTimeout.Std(),
		MaxHeaderBytes: h2HeaderBytes(sv),
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: H2MaxConcurrentStreams,
			WriteByteTimeout:     sv.WriteTimeout.Std(),
		},
		ConnState: g.connState,
		// x/net logs what clients do wrong (a bad preface, no
		// SETTINGS in time): debug, so that clients cannot fill the log.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	g.srv = &http2.Server{}
	// ConfigureServer registers the graceful-shutdown hook (GOAWAY to
	// every connection) on base; it fails only for a cipher suite list
	// without HTTP/2's required suite, and base has none.
	if err := http2.ConfigureServer(g.base, g.srv); err != nil {
		panic("listener: http2.ConfigureServer: " + err.Error())
	}
	return g
}

// h2HeaderBytes returns the net/http MaxHeaderBytes that makes x/net
// advertise a SETTINGS_MAX_HEADER_LIST_SIZE consistent with the HTTP/1.1
// limits: the request line's and the header section's bytes plus HTTP/2's
// 32 octets per field, for max_header_fields fields and the pseudo-header
// fields. x/net adds 10 fields' overhead itself.
func h2HeaderBytes(sv config.Server) int {
	n := int(sv.MaxHeaderBytes) + int(sv.MaxRequestLine) + (sv.MaxHeaderFields+h2PseudoFields-10)*h2PerFieldOverhead
	if n < int(sv.MaxHeaderBytes) {
		n = int(sv.MaxHeaderBytes)
	}
	return n
}

// Update makes sv the settings of connections that start from now on;
// running connections keep theirs.
func (s *H2) Update(sv config.Server) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen.sv == sv {
		return
	}
	s.gen = s.newGen(sv)
}

// ServeConn serves c, a TLS connection that negotiated "h2" or a cleartext
// connection whose first bytes (not yet read) are the HTTP/2 preface, until
// it ends. It closes c.
func (s *H2) ServeConn(c net.Conn) { s.serve(c, false) }

// ServeConnPreface is ServeConn for a cleartext connection whose HTTP/2
// preface (RFC 9113 §3.4) was already read from c.
func (s *H2) ServeConnPreface(c net.Conn) { s.serve(c, true) }

func (s *H2) serve(c net.Conn, sawPreface bool) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return
	}
	g := s.gen
	s.gens[g]++
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer s.done(g, c)
	g.srv.ServeConn(c, &http2.ServeConnOpts{BaseConfig: g.base, Handler: g, SawClientPreface: sawPreface})
}

// done forgets a connection that ended.
func (s *H2) done(g *h2Gen, c net.Conn) {
	c.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if s.gens[g]--; s.gens[g] == 0 {
		delete(s.gens, g)
	}
	if s.closing.Load() && len(s.conns) == 0 {
		s.closeDrained()
	}
}

// closeDrained closes drained once; s.mu is held.
func (s *H2) closeDrained() {
	select {
	case <-s.drained:
	default:
		close(s.drained)
	}
}

// Conns returns the number of open HTTP/2 connections.
func (s *H2) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Shutdown drains the connections gracefully: each is sent GOAWAY (RFC
// 9113 §6.8), so that the client opens no new streams on it, and closes
// once its open streams are done. Shutdown waits for that until ctx is
// done, then closes what is left (ctx's error is returned). Connections
// served after Shutdown began are sent GOAWAY as soon as they are set up.
func (s *H2) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.goAway()
	s.mu.Lock()
	if len(s.conns) == 0 {
		s.closeDrained()
	}
	s.mu.Unlock()
	select {
	case <-s.drained:
		return nil
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}

// goAway starts the graceful shutdown of every connection.
func (s *H2) goAway() {
	s.mu.Lock()
	gens := make([]*h2Gen, 0, len(s.gens)+1)
	gens = append(gens, s.gen)
	for g := range s.gens {
		if g != s.gen {
			gens = append(gens, g)
		}
	}
	s.mu.Unlock()
	for _, g := range gens {
		g.goAway()
	}
}

// Close closes every connection at once; later connections are closed as
// they come.
func (s *H2) Close() error {
	s.closing.Store(true)
	s.mu.Lock()
	s.closed = true
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	if len(s.conns) == 0 {
		s.closeDrained()
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	return nil
}

// goAway runs the graceful-shutdown hook x/net registered on base, which
// sends GOAWAY to each of g's connections (each at most once). base never
// serves, so its Shutdown returns at once.
func (g *h2Gen) goAway() {
	g.base.Shutdown(context.Background())
}

// connState catches connections that x/net registered after the shutdown
// hook ran: their first state change happens after registration, so
// running the hook again reaches them.
func (g *h2Gen) connState(_ net.Conn, st http.ConnState) {
	if st == http.StateActive && g.h.closing.Load() {
		go g.goAway()
	}
}

// ServeHTTP applies the limits x/net does not enforce, then hands the
// request to the handler.
func (g *h2Gen) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if n := fieldCount(r.Header, g.sv.MaxHeaderFields); n > g.sv.MaxHeaderFields {
		fe := failure.New(failure.RequestHeaderTooLarge, "more than server.max_header_fields header fields")
		if g.reject != nil {
			g.reject.Reject(w, r, fe)
		} else {
			respond.Problem(w, r, fe.Kind, respond.RequestID(r.Header))
		}
		return
	}
	dl, ok := w.(deadliner)
	if !ok {
		g.h.handler.ServeHTTP(w, r)
		return
	}
	x := &h2Exchange{}
	if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		x.body = timedBody{body: r.Body, dl: dl, timeout: g.sv.BodyTimeout.Std()}
		r.Body = &x.body
	}
	x.w = timedWriter{ResponseWriter: w, dl: dl, timeout: g.sv.WriteTimeout.Std()}
	g.h.handler.ServeHTTP(&x.w, r)
	// Not reached when the handler panics (an abort resets the stream).
	x.w.finish()
}

// h2Exchange holds a request's timed body and response writer: one
// allocation per request.
type h2Exchange struct {
	body timedBody
	w    timedWriter
}

// deadliner is x/net's ResponseWriter's per-stream deadlines.
type deadliner interface {
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// timedWriter applies server.write_timeout to an HTTP/2 response: each
// Write and Flush must be taken by the client within the timeout, or the
// stream is reset. Over HTTP/2 a client that stops reading shows as a
// flow-control window that stays shut rather than as a blocked socket
// (which x/net's WriteByteTimeout covers), and x/net bounds that wait only
// with a deadline on the whole response; candor's timeout, as over
// HTTP/1.1, bounds each wait. The deadline is armed only while a write
// waits, so a slow upstream is never blamed on the client.
type timedWriter struct {
	http.ResponseWriter
	dl      deadliner
	timeout time.Duration
	// wrote is set once body bytes were written: they may sit in x/net's
	// buffer until the handler returns.
	wrote bool
}

func (w *timedWriter) Write(p []byte) (int, error) {
	w.arm()
	n, err := w.ResponseWriter.Write(p)
	w.disarm()
	w.wrote = w.wrote || n > 0
	return n, err
}

func (w *timedWriter) WriteString(s string) (int, error) {
	w.arm()
	n, err := io.WriteString(w.ResponseWriter, s)
	w.disarm()
	w.wrote = w.wrote || n > 0
	return n, err
}

func (w *timedWriter) Flush() { w.FlushError() }

func (w *timedWriter) FlushError() error {
	w.arm()
	var err error
	switch f := w.ResponseWriter.(type) {
	case interface{ FlushError() error }:
		err = f.FlushError()
	case http.Flusher:
		f.Flush()
	}
	w.disarm()
	return err
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *timedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// finish sends what the handler left buffered within the timeout; x/net
// would send it after the handler returned, without one.
func (w *timedWriter) finish() {
	if w.wrote {
		w.FlushError()
	}
}

func (w *timedWriter) arm()    { w.dl.SetWriteDeadline(time.Now().Add(w.timeout)) }
func (w *timedWriter) disarm() { w.dl.SetWriteDeadline(time.Time{}) }

// fieldCount counts the fields of h, stopping once it passes limit.
func fieldCount(h http.Header, limit int) int {
	n := 0
	for _, vv := range h {
		if n += len(vv); n > limit {
			break
		}
	}
	return n
}

// timedBody applies server.body_timeout to an HTTP/2 request body: each
// Read must make progress within the timeout. The deadline is armed only
// while a Read waits, so a handler that reads slowly (its upstream is slow
// to take the body) is never blamed on the client. A stalled body fails
// with request_timeout (408 when no response was begun).
type timedBody struct {
	body    io.ReadCloser
	dl      deadliner
	timeout time.Duration
}

func (b *timedBody) Read(p []byte) (int, error) {
	b.dl.SetReadDeadline(time.Now().Add(b.timeout))
	n, err := b.body.Read(p)
	b.dl.SetReadDeadline(time.Time{})
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return n, failure.Wrap(failure.RequestTimeout, "no request body data within server.body_timeout", err)
	}
	return n, err
}

func (b *timedBody) Close() error { return b.body.Close() }
