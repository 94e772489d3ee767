package h1

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"candor/internal/failure"
)

// Connection states, for Shutdown.
const (
	stateIdle   int32 = iota // waiting for a request; no byte of one read
	stateActive              // reading or serving a request
	stateClosed              // closed by Shutdown or Close
)

// hotIdle is how long a keep-alive connection waits for its next request
// on the goroutine that served the last one, holding its buffers and
// request state. A client that sends its next request sooner (a busy
// client, a benchmark) is served with no goroutine, pool or deadline work
// between requests; a connection idle for longer gives its memory back and
// is parked (see conn). It is short so that a burst
// of connections that each make one request (10,000 idle keep-alive
// clients) never holds much memory at once.
const hotIdle = 50 * time.Millisecond

// Buffer sizes. A request head of up to rbufSize bytes is read with one
// read(2); a longer one grows the buffer up to the head limits. A response
// head and small body are written from wbuf with one write(2).
const (
	rbufSize = 4 << 10
	wbufSize = 4 << 10
)

// Lingering close (after a refusal, or a response that left request bytes
// unread): the server stops writing (FIN) and reads what the client still
// sends for a while before closing, so that the response is not lost to
// the reset a close with unread bytes would send (RFC 9112 §9.6).
const (
	lingerTime  = 500 * time.Millisecond
	lingerBytes = 256 << 10
)

// maxDiscard is the most request body bytes read and thrown away to keep a
// connection whose handler did not read its request's body (net/http's
// value); a larger rest closes the connection instead.
const maxDiscard = 256 << 10

// maxDiscardReads bounds the reads of such a drain: with chunked framing
// each may take a chunk-size line of up to 4KiB besides its data, so the
// drain reads at most about 4MiB from the wire, however small the chunks.
const maxDiscardReads = 1024

var (
	rbufPool  = sync.Pool{New: func() any { b := make([]byte, rbufSize); return &b }}
	wbufPool  = sync.Pool{New: func() any { b := make([]byte, 0, wbufSize); return &b }}
	statePool = sync.Pool{New: func() any { return newReqState() }}
)

// conn is one client connection.
//
// It is served by busy goroutines: one sets the connection up, reads and
// serves requests for as long as they come within hotIdle of each other,
// and then parks the connection, idle, and ends. Parked, a connection
// has no goroutine at all (idlePoller), or on platforms without the
// poller and for TLS connections a fresh goroutine that only waits
// (waitIdle: a few small frames, so that its stack stays at the minimum).
// When the connection becomes readable, a new busy goroutine goes on.
// Its buffers, request state, http.Request and context are in pools while
// it is idle.
type conn struct {
	s      *Server
	nc     net.Conn
	rc     syscall.RawConn // the TCP socket's, nil without one
	waitFn func(fd uintptr) bool
	done   func() // called once the connection ended (or was hijacked and its handler returned)
	tls    *tls.ConnectionState

	state atomic.Int32

	// Owned by the goroutine serving or waiting for the connection, or
	// by the poller while it is parked there.
	set        *settings // of the current request
	rbuf       []byte    // nil while idle
	r, w       int       // unread bytes are rbuf[r:w]
	wbuf       []byte    // nil while idle
	st         *reqState // nil while idle
	rdl, wdl   time.Time // deadlines set on nc (zero: none)
	idleWant   time.Time // when the idle wait ends the connection
	lastDone   time.Time // when the last response was complete (or the accept)
	waitErr    error     // how the last idle wait ended
	first      bool      // no request read yet
	ready      bool      // set up (setup ran)
	woke       bool      // the busy period follows an idle wait
	one        [1]byte   // a byte read by an idle wait without a socket
	hasOne     bool
	closeAfter bool // close after the current response
	// retired: a request body read was still running on another
	// goroutine when the server took the body back (body.fence); the
	// connection closes and its request state and read buffer are left to
	// the garbage collector rather than pooled, since that reader may
	// still hold them.
	retired   bool
	unread    bool // request bytes may be left unread: linger at close
	hijacked  bool
	handedOff bool // given to H2C
	werr      error

	// The idle poller's (under its lock).
	parkID     uint64
	parkUntil  int64 // UnixNano
	heapIdx    int
	epollAdded bool

	// The client-gone watcher (Server.watch) and Close.
	watchFrom atomic.Int64 // UnixNano the watched handler started, or 0
	wmu       sync.Mutex
	watching  bool               // the socket may be checked
	cancel    context.CancelFunc // the busy period's context's
	// Owned by the watcher goroutine.
	checkedFrom int64
	nextCheck   int64
}

// start serves nc from now on, calling done once it ended.
func (s *Server) start(nc net.Conn, done func()) {
	c := &conn{s: s, nc: nc, done: done, first: true, lastDone: time.Now(), heapIdx: -1}
	go c.busy()
}

// busy runs one busy period: it serves the connection, then parks it
// idle, or ends it.
func (c *conn) busy() {
	if !c.ready && !c.setup() {
		return
	}
	if err := c.waitErr; err != nil {
		// The idle wait ended without data: a deadline that fired early
		// or a poller that gave up (wait again), or the end.
		c.waitErr = nil
		if err == errRepark || isTimeout(err) && time.Now().Before(c.idleWant) && c.state.Load() != stateClosed {
			c.park()
			return
		}
		c.end()
		return
	}
	if !c.serve() {
		c.end()
		return
	}
	c.park()
}

// park makes the idle connection wait for its next request, until
// idleWant: in the poller, or on a fresh goroutine.
func (c *conn) park() {
	if c.waitFn != nil && !c.s.noPoller {
		if p := pollerOf(); p != nil && p.park(c, c.idleWant) {
			return
		}
	}
	c.armRead(time.Now(), c.idleWant)
	go c.wait()
}

// wait is a goroutine's idle wait; the goroutine then serves.
func (c *conn) wait() {
	err := c.waitIdle()
	c.waitErr, c.woke = err, err == nil
	c.busy()
}

// waitIdle waits, holding no buffers, until the connection has bytes to
// read (or its peer closed it) or the read deadline passes. It is kept to
// a few frames: a goroutine's stack stays as deep as it once was.
func (c *conn) waitIdle() error {
	if c.waitFn != nil {
		return c.rc.Read(c.waitFn)
	}
	n, err := c.nc.Read(c.one[:])
	if n > 0 {
		c.hasOne = true
		return nil
	}
	return err
}

// setup prepares a new connection on its first busy goroutine; false when
// the server takes no more connections (c is then closed).
func (c *conn) setup() bool {
	nc := c.nc
	raw := nc
	if tc, ok := nc.(*tls.Conn); ok {
		st := tc.ConnectionState()
		c.tls = &st
		raw = tc.NetConn()
	}
	if sc, ok := raw.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			c.rc = rc
		}
	}
	if c.rc != nil && c.tls == nil {
		c.waitFn = readable
	}
	if !c.s.track(c) {
		nc.Close()
		c.done()
		return false
	}
	c.ready = true
	return true
}

// end releases the connection.
func (c *conn) end() {
	c.s.untrack(c)
	c.state.Store(stateClosed)
	c.stopWatch()
	if !c.hijacked && !c.handedOff {
		c.nc.Close()
	}
	c.release()
	c.done()
}

// closeIdle closes c, which Shutdown or Close found idle (or was told to
// close at once): a parked connection is ended here, any other by the
// goroutine that waits on it, which finds it closed.
func (c *conn) closeIdle() {
	if p := pollerOf(); p != nil && p.take(c) {
		c.waitErr = errIdleTimeout
		go c.busy()
		return
	}
	c.nc.Close()
}

// warm takes buffers and request state for a busy period.
func (c *conn) warm() {
	if c.rbuf == nil {
		c.rbuf = *rbufPool.Get().(*[]byte)
		c.r, c.w = 0, 0
	}
	if c.wbuf == nil {
		c.wbuf = (*wbufPool.Get().(*[]byte))[:0]
	}
	if c.st == nil {
		st := statePool.Get().(*reqState)
		st.bind(c)
		// The context of the busy period's requests: cancelled when the
		// client is found gone, the server closes, or the period ends.
		ctx, cancel := context.WithCancel(context.Background())
		var tmpl http.Request
		st.ctx, st.req = ctx, tmpl.WithContext(ctx)
		if a := c.nc.RemoteAddr(); a != nil {
			st.remote = a.String()
		}
		c.wmu.Lock()
		c.st, c.cancel = st, cancel
		c.wmu.Unlock()
		if c.state.Load() == stateClosed {
			cancel() // Close ran before the context existed
		}
	}
	if c.hasOne {
		c.rbuf[c.w] = c.one[0]
		c.w++
		c.hasOne = false
	}
}

// cancelCtx cancels the busy period's context, if there is one. Any
// goroutine may call it.
func (c *conn) cancelCtx() {
	c.wmu.Lock()
	if c.cancel != nil {
		c.cancel()
	}
	c.wmu.Unlock()
}

// release gives the buffers and request state back, keeping unread bytes,
// and ends the busy period's context.
func (c *conn) release() {
	if st := c.st; st != nil {
		c.wmu.Lock()
		cancel := c.cancel
		c.st, c.cancel = nil, nil
		c.wmu.Unlock()
		cancel()
		if !c.retired {
			st.unbind()
			statePool.Put(st)
		}
	}
	if c.retired {
		// A stale body reader may still hold the state and the read
		// buffer: neither is reused.
		c.rbuf, c.r, c.w = nil, 0, 0
	}
	if c.wbuf != nil && len(c.wbuf) == 0 {
		if cap(c.wbuf) == wbufSize {
			b := c.wbuf
			wbufPool.Put(&b)
		}
		c.wbuf = nil
	}
	if c.rbuf != nil && c.r == c.w {
		if len(c.rbuf) == rbufSize {
			b := c.rbuf
			rbufPool.Put(&b)
		}
		c.rbuf = nil
		c.r, c.w = 0, 0
	}
}

// serve serves requests until the connection goes idle (true: the caller
// waits for the next one) or must close (false).
func (c *conn) serve() bool {
	woke := c.woke
	c.woke = false
	c.warm()
	// Each round serves one request; the connection's deadlines and
	// limits end it.
	for {
		switch c.next(woke) {
		case nextIdle:
			c.release()
			return true
		case nextClose:
			return false
		}
		woke = false
		c.serveRequest()
		if !c.keepAlive() {
			// Bytes the client sent that were not read would make the
			// close a reset, which may destroy the response on its way.
			if (c.unread || c.r < c.w) && !c.hijacked {
				c.lingerClose()
			}
			return false
		}
	}
}

// nextResult is what next found.
type nextResult uint8

const (
	nextRequest nextResult = iota // a request to serve: c.req
	nextIdle                      // no request within hotIdle
	nextClose                     // the connection is done (closed, refused, timed out, handed off)
)

// next reads and parses the next request head into the request state's
// request; woke says an idle wait just saw the connection readable.
// Refusals are answered here.
func (c *conn) next(woke bool) nextResult {
	if c.r == c.w {
		c.r, c.w = 0, 0
		switch res := c.readFirst(woke); res {
		case nextRequest:
		case nextIdle:
			return nextIdle
		default:
			return res
		}
	}
	if !c.state.CompareAndSwap(stateIdle, stateActive) && c.state.Load() != stateActive {
		return nextClose // closed by Shutdown
	}
	// The settings in force when the request's first bytes are there.
	set := c.s.settings()
	c.set = set
	st := c.st
	p := &st.p
	p.reset(set.lim)
	start := c.r
	var firstByte time.Time
	// Each round reads more of the head; the head's limits bound the
	// buffer and read_header_timeout the time.
	for {
		done, fe := p.feed(c.rbuf[start:c.w])
		if fe != nil {
			if c.first && fe.Kind == failure.RequestVersionUnsupported && c.s.H2C != nil && bytes.HasPrefix(c.rbuf[start:c.w], h2Preface[:16]) {
				c.handOff(start)
				return nextClose
			}
			c.refuse(fe, start)
			return nextClose
		}
		if done {
			break
		}
		if firstByte.IsZero() {
			firstByte = time.Now()
		}
		if c.w == len(c.rbuf) {
			if start > 0 {
				// Offsets are relative to the head's start: moving the
				// head to the front keeps them.
				c.w = copy(c.rbuf, c.rbuf[start:c.w])
				c.r, start = 0, 0
			} else if !c.grow(set.lim.headCap()) {
				c.refuse(errf(failure.RequestHeaderTooLarge, "request head exceeds the read buffer"), start)
				return nextClose
			}
		}
		want := firstByte.Add(set.ReadHeaderTimeout)
		c.armRead(firstByte, want)
		if err := c.readMore(want); err != nil {
			if isTimeout(err) {
				c.refuse(errf(failure.RequestTimeout, "request head not complete within "+set.ReadHeaderTimeout.String()), start)
			}
			return nextClose
		}
	}
	c.first = false
	c.r = start + p.off
	if fe := st.build(st.req, c.rbuf[start:c.r]); fe != nil {
		c.refuse(fe, start)
		return nextClose
	}
	return nextRequest
}

// readFirst reads the first bytes of the next request into the empty
// buffer: at once after an idle wait (woke), or within hotIdle of the
// last response (or of the accept). It sets idleWant, the end of the
// wait for a request: idle_timeout after the last response, or
// read_header_timeout after the accept.
func (c *conn) readFirst(woke bool) nextResult {
	set := c.s.settings()
	wait := set.IdleTimeout
	if c.first {
		wait = set.ReadHeaderTimeout
	}
	idle := c.lastDone.Add(wait)
	c.idleWant = idle
	if c.w > 0 {
		return nextRequest // the byte an idle wait read
	}
	want, now := idle, c.lastDone // just now, unless after an idle wait
	if hot := c.lastDone.Add(hotIdle); !woke && hot.Before(idle) {
		want = hot
	}
	if woke {
		now = time.Now()
	}
	c.armRead(now, want)
	err := c.readMore(want)
	if err == nil {
		return nextRequest
	}
	if isTimeout(err) && want.Before(idle) {
		return nextIdle
	}
	return nextClose
}

// grow enlarges the read buffer, up to max bytes; false when it is that
// large already.
func (c *conn) grow(max int) bool {
	if len(c.rbuf) >= max {
		return false
	}
	nb := make([]byte, min(max, 2*len(c.rbuf)))
	c.w = copy(nb, c.rbuf[c.r:c.w])
	c.r = 0
	if len(c.rbuf) == rbufSize {
		b := c.rbuf
		rbufPool.Put(&b)
	}
	c.rbuf = nb
	return true
}

// readMore reads at least one byte into rbuf[w:] before want (the read
// deadline, already armed, which may fire early and is then re-armed).
func (c *conn) readMore(want time.Time) error {
	for range 3 {
		n, err := c.nc.Read(c.rbuf[c.w:])
		if n > 0 {
			c.w += n
			return nil
		}
		if err == nil {
			continue
		}
		if isTimeout(err) && !want.IsZero() && time.Now().Before(want) {
			c.setReadDeadline(want)
			continue
		}
		return err
	}
	return io.ErrNoProgress
}

// armRead makes sure the read deadline is no later than want and not yet
// past at now, setting it only when needed: a deadline armed for an
// earlier request that is still ahead is kept, and may fire early (the
// reader then re-arms it). Most requests of a busy connection thus set no
// deadline at all.
func (c *conn) armRead(now, want time.Time) {
	if c.rdl.IsZero() || c.rdl.After(want) || !c.rdl.After(now) {
		c.setReadDeadline(want)
	}
}

func (c *conn) setReadDeadline(t time.Time) {
	c.nc.SetReadDeadline(t)
	c.rdl = t
}

// armWrite makes sure the write deadline is at least write_timeout ahead,
// setting it an eighth further so that most flushes set none.
func (c *conn) armWrite() {
	wt := c.set.WriteTimeout
	now := time.Now()
	if c.wdl.Before(now.Add(wt)) {
		c.wdl = now.Add(wt + wt/8)
		c.nc.SetWriteDeadline(c.wdl)
	}
}

// flush writes the buffered output.
func (c *conn) flush() error {
	if c.werr != nil {
		return c.werr
	}
	if len(c.wbuf) == 0 {
		return nil
	}
	c.armWrite()
	_, err := c.nc.Write(c.wbuf)
	c.wbuf = c.wbuf[:0]
	if err != nil {
		c.writeFailed(err)
	}
	return err
}

// writeBoth writes the buffered output and then p, with one writev(2)
// when the connection supports it.
func (c *conn) writeBoth(p []byte) error {
	if c.werr != nil {
		return c.werr
	}
	c.armWrite()
	var err error
	if len(c.wbuf) == 0 {
		_, err = c.nc.Write(p)
	} else {
		// In the request state, so that WriteTo's pointer costs no
		// allocation.
		st := c.st
		st.iov = append(st.iovs[:0], c.wbuf, p)
		_, err = st.iov.WriteTo(c.nc)
		st.iovs = [2][]byte{}
		c.wbuf = c.wbuf[:0]
	}
	if err != nil {
		c.writeFailed(err)
	}
	return err
}

// writeFailed records a failed write: the client is gone or too slow;
// the response is cut off and the connection closed.
func (c *conn) writeFailed(err error) {
	c.werr = err
	c.closeAfter = true
	c.cancelCtx()
}

// keepAlive reports whether the connection serves another request, and
// marks it idle when no byte of one is buffered.
func (c *conn) keepAlive() bool {
	if c.hijacked || c.closeAfter || c.werr != nil || c.st.ctx.Err() != nil || c.s.shutdown.Load() {
		return false
	}
	c.lastDone = time.Now()
	if c.r == c.w {
		c.state.Store(stateIdle)
		if c.s.shutdown.Load() {
			return false
		}
	}
	return true
}

// lingerClose stops writing, then reads and drops what the client still
// sends, for at most lingerTime and lingerBytes, so that closing does not
// reset the connection before the client read the response.
func (c *conn) lingerClose() {
	if c.werr != nil {
		return
	}
	type closeWriter interface{ CloseWrite() error }
	raw := c.nc
	if tc, ok := raw.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	cw, ok := raw.(closeWriter)
	if !ok || cw.CloseWrite() != nil {
		return
	}
	c.setReadDeadline(time.Now().Add(lingerTime))
	if c.rbuf == nil {
		return
	}
	// Bounded by lingerBytes (each round reads at least a byte) and the
	// deadline.
	for n := 0; n < lingerBytes; {
		m, err := c.nc.Read(c.rbuf)
		n += m
		if err != nil {
			return
		}
	}
}

// handOff gives the connection to H2C, replaying the bytes read so far.
func (c *conn) handOff(start int) {
	pending := bytes.Clone(c.rbuf[start:c.w])
	c.r, c.w = 0, 0
	c.handedOff = true
	c.s.untrack(c)
	c.nc.SetDeadline(time.Time{})
	c.s.H2C(&replayConn{Conn: c.nc, pending: pending})
}

// h2Preface is the HTTP/2 client connection preface (RFC 9113 §3.4).
var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// replayConn is a connection whose first reads return bytes already read.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// serveRequest runs the handler for c.req and completes its response.
func (c *conn) serveRequest() {
	st := c.st
	r := st.req
	w := &st.resp
	now := time.Now()
	c.closeAfter, c.unread = false, false
	w.reset(r)
	st.body.start(r)
	c.startWatch(now)
	ok := c.call(w, r, c.s.Handler)
	c.stopWatch()
	if c.hijacked {
		return
	}
	// The handler is done with the body; a read of it may still be
	// running on a goroutine the handler started (an HTTP/2 upstream
	// transport sending it). Fence it off before the connection's buffer
	// is used again.
	if st.body.fence() {
		c.closeAfter, c.retired = true, true
	}
	st.body.g.mu.Unlock()
	if !ok {
		// Cut the response off: what was written goes out, without the
		// last chunk; then the connection closes.
		c.closeAfter = true
		st.body.active = false
		c.flush()
		return
	}
	w.finish()
	st.body.end()
}

// call runs h, recovering a panic: http.ErrAbortHandler silently, any
// other with a log record. It reports false after a panic.
func (c *conn) call(w *response, r *http.Request, h http.Handler) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			ok = false
			if v != http.ErrAbortHandler {
				buf := make([]byte, 16<<10)
				buf = buf[:runtime.Stack(buf, false)]
				c.s.log().Error("panic serving a request", "peer", c.st.remote, "panic", panicText(v), "stack", string(buf))
			}
		}
	}()
	if h == nil {
		h = http.NotFoundHandler()
	}
	h.ServeHTTP(w, r)
	return true
}

func panicText(v any) string {
	switch v := v.(type) {
	case error:
		return v.Error()
	case string:
		return v
	}
	return "non-error panic value"
}

// refuse answers a request the server refused with fe, from what was
// parsed of the head at rbuf[start:], and arranges the close.
func (c *conn) refuse(fe *failure.Error, start int) {
	st := c.st
	r := st.req
	st.partial(r, c.rbuf[start:c.w])
	c.closeAfter = true
	c.unread = true
	w := &st.resp
	w.reset(r)
	st.body.active = false
	defer func() {
		if v := recover(); v != nil {
			c.s.log().Error("panic rendering a refused request", "peer", c.st.remote, "panic", panicText(v))
			c.flush()
		}
	}()
	c.s.reject(w, r, fe)
	w.finish()
	c.lingerClose()
}

// startWatch lets the watcher check the socket while the handler runs.
func (c *conn) startWatch(now time.Time) {
	if c.rc == nil {
		return
	}
	c.wmu.Lock()
	c.watching = true
	c.wmu.Unlock()
	c.watchFrom.Store(now.UnixNano())
}

// stopWatch ends the watch, waiting for a check in progress.
func (c *conn) stopWatch() {
	if c.watchFrom.Load() == 0 {
		return
	}
	c.watchFrom.Store(0)
	c.wmu.Lock()
	c.watching = false
	c.wmu.Unlock()
}

// checkGone is the watcher's check of a connection whose handler has run
// for watchAfter: the context is cancelled when the client is gone.
func (c *conn) checkGone() {
	from := c.watchFrom.Load()
	if from == 0 {
		return
	}
	now := time.Now().UnixNano()
	if from != c.checkedFrom {
		c.checkedFrom, c.nextCheck = from, 0
	}
	if now < c.nextCheck {
		return
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !c.watching {
		return
	}
	if peerGone(c.rc) {
		c.watching = false
		if c.cancel != nil {
			c.cancel()
		}
		return
	}
	// Check less often as the handler runs on: every watchEvery at
	// first, at most every second.
	c.nextCheck = now + int64(min(max(time.Duration(now-from)/4, watchEvery), time.Second)) - int64(watchEvery)/2
}

// reqState is the per-request memory a connection reuses: it goes back to
// a pool while the connection is idle.
type reqState struct {
	// ctx and req are the busy period's: req is reused for each of its
	// requests.
	ctx    context.Context
	req    *http.Request
	remote string // the client's address
	p      parser
	url    url.URL
	hdr    http.Header
	vals   []string
	te     [1]string
	resp   response
	body   body
	guard  bodyGuard // body.g
	keys   []string
	iovs   [2][]byte
	iov    net.Buffers
}

func newReqState() *reqState {
	st := &reqState{hdr: make(http.Header, 16), vals: make([]string, 0, 16)}
	st.resp.hdr = make(http.Header, 16)
	st.te[0] = "chunked"
	st.body.g = &st.guard
	return st
}

func (st *reqState) bind(c *conn) {
	st.resp.c = c
	st.resp.st = st
	st.body.c = c
}

func (st *reqState) unbind() {
	st.ctx, st.req, st.remote = nil, nil, ""
	st.resp.c, st.resp.req = nil, nil
	st.body = body{g: &st.guard}
	clear(st.hdr)
	clear(st.resp.hdr)
	clear(st.vals[:cap(st.vals)])
	st.url = url.URL{}
}

// build sets r from a complete head, head (whose first byte is offset 0
// of the parser's spans). The head's strings come from one allocation.
func (st *reqState) build(r *http.Request, head []byte) *failure.Error {
	p := &st.p
	c := st.resp.c
	s := string(head[p.line0:])
	at := func(sp span) string { return s[sp.lo-p.line0 : sp.hi-p.line0] }
	st.common(r, at)
	if !setURL(&st.url, r.RequestURI, p.form) {
		r.URL = nil
		return errf(failure.RequestMalformed, "request target "+strconv.Quote(r.RequestURI)+" is not a valid URI")
	}
	r.URL = &st.url
	if p.form == formAbsolute {
		r.Host = st.url.Host
	}
	if p.clSeen {
		st.addValue("Content-Length", at(p.clValue))
	}
	r.ContentLength = p.contentLengthOf()
	if p.chunked() {
		r.TransferEncoding = st.te[:]
	} else {
		r.TransferEncoding = nil
	}
	r.Close = p.wantsClose()
	if r.ContentLength == 0 {
		r.Body = http.NoBody
	} else {
		r.Body = &st.body
	}
	_ = c
	return nil
}

// common sets the fields of r that a refused request has too.
func (st *reqState) common(r *http.Request, at func(span) string) {
	p := &st.p
	c := st.resp.c
	r.RemoteAddr, r.TLS = st.remote, c.tls
	r.Form, r.PostForm, r.MultipartForm, r.Trailer, r.GetBody = nil, nil, nil, nil, nil
	r.Cancel, r.Response, r.Pattern = nil, nil, ""
	r.Body, r.ContentLength, r.TransferEncoding, r.Close = http.NoBody, 0, nil, true
	r.URL = nil
	if p.inFields {
		r.Method, r.RequestURI = at(p.method), at(p.target)
		r.ProtoMajor, r.ProtoMinor = 1, p.minor
	} else {
		r.Method, r.RequestURI = "", ""
		r.ProtoMajor, r.ProtoMinor = 1, 1
	}
	r.Proto = "HTTP/1.1"
	if r.ProtoMinor == 0 {
		r.Proto = "HTTP/1.0"
	}
	h := st.hdr
	clear(h)
	r.Header = h
	if cap(st.vals) < len(p.fields)+1 {
		st.vals = make([]string, 0, len(p.fields)+8)
	}
	st.vals = st.vals[:0]
	for _, f := range p.fields {
		st.addValue(at(f.name), at(f.value))
	}
	r.Host = ""
	if p.hosts > 0 {
		r.Host = at(p.host)
	}
}

// addValue adds a value to the request's Header: each value is a full
// slice expression of one backing array, so that appending to one copies
// it rather than overwriting its neighbour.
func (st *reqState) addValue(name, v string) {
	h := st.hdr
	if vs, ok := h[name]; ok {
		h[name] = append(vs, v)
		return
	}
	i := len(st.vals)
	st.vals = append(st.vals, v)
	h[name] = st.vals[i : i+1 : i+1]
}

// partial sets r from a head refused at some point, head being all the
// bytes read from the head's start.
func (st *reqState) partial(r *http.Request, head []byte) {
	p := &st.p
	end := p.off
	if end < p.line0 {
		end = p.line0
	}
	s := string(head[p.line0:end])
	at := func(sp span) string {
		if sp.hi > end {
			return ""
		}
		return s[sp.lo-p.line0 : sp.hi-p.line0]
	}
	st.common(r, at)
	if p.inFields && p.done && p.form != formAuthority {
		if setURL(&st.url, r.RequestURI, p.form) {
			r.URL = &st.url
		}
	}
}

// isTimeout reports a deadline error.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
