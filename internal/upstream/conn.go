package upstream

import (
	"bufio"
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// aLongTimeAgo is a deadline in the past: setting it interrupts blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

// conn is one upstream connection. One goroutine owns it at a time: the
// attempt that took it from the pool, then the response body until it is
// finished; only context cancellation touches it concurrently, and only to
// set a deadline.
type conn struct {
	nc  net.Conn // what requests are written to: TCP or TLS
	raw net.Conn // the TCP connection under nc, probed before reuse
	br  *bufio.Reader
	bw  *bufio.Writer

	// sent and recv count bytes on the wire (above TLS) over the life of
	// the connection.
	sent, recv int64
	// writeIdle bounds each write: the longest the upstream may refuse to
	// take request bytes.
	writeIdle time.Duration
	// ctx is the context of the attempt using the connection. Every
	// deadline set during the attempt is followed by a check of it: the
	// cancellation hook sets a past deadline, which a later deadline would
	// otherwise override.
	ctx context.Context

	idleSince time.Time
	idleLimit time.Duration
	uses      int

	// interrupt is cancelIO, the cancellation hook of every attempt on
	// the connection (context.AfterFunc), made once.
	interrupt func()
	// probe checks the idle connection before reuse (alive).
	probe prober
	// hs is the memory response heads are parsed in.
	hs headScratch
}

// Read implements io.Reader for br, counting bytes.
func (c *conn) Read(p []byte) (int, error) {
	n, err := c.nc.Read(p)
	c.recv += int64(n)
	return n, err
}

// Write implements io.Writer for bw, counting bytes and refreshing the write
// deadline so that a stalled upstream is noticed.
func (c *conn) Write(p []byte) (int, error) {
	if c.writeIdle > 0 {
		if err := c.setWriteDeadline(time.Now().Add(c.writeIdle)); err != nil {
			return 0, err
		}
	}
	n, err := c.nc.Write(p)
	c.sent += int64(n)
	return n, err
}

func (c *conn) close() { c.nc.Close() }

// cancelIO makes blocked I/O fail at once: a deadline in the past.
func (c *conn) cancelIO() { c.nc.SetDeadline(aLongTimeAgo) }

// setReadDeadline sets the read deadline and then reports the attempt's
// cancellation, so that a cancellation is never overridden.
func (c *conn) setReadDeadline(t time.Time) error {
	c.nc.SetReadDeadline(t)
	if c.ctx != nil {
		return c.ctx.Err()
	}
	return nil
}

// setWriteDeadline is setReadDeadline for writes.
func (c *conn) setWriteDeadline(t time.Time) error {
	c.nc.SetWriteDeadline(t)
	if c.ctx != nil {
		return c.ctx.Err()
	}
	return nil
}

// pool holds one target's idle connections, most recently used first out:
// the warmest connection is the least likely to have been closed by the
// upstream.
type pool struct {
	mu     sync.Mutex
	idle   []*conn
	max    int
	closed bool // set by closeAll: put closes instead of parking
	// discarded counts connections closed instead of being reused:
	// expired or failing the probe in get, reaped, or refused by put.
	discarded atomic.Uint64
}

// get returns a live idle connection, or nil. Connections idle longer than
// their limit, or that fail the liveness probe, are closed.
func (p *pool) get(now time.Time) *conn {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			return nil
		}
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if now.Sub(c.idleSince) < c.idleLimit && c.br.Buffered() == 0 && c.tlsQuiet() && c.probe.alive(c.raw) {
			return c
		}
		p.discarded.Add(1)
		c.close()
	}
}

// tlsQuiet reports whether a TLS connection has nothing to read: tls.Conn
// may hold decrypted bytes, or records already read off the socket, that
// neither bufio nor the socket probe can see. A read with a past deadline
// returns them, or times out at once without touching the socket.
func (c *conn) tlsQuiet() bool {
	if c.nc == c.raw {
		return true
	}
	c.nc.SetReadDeadline(aLongTimeAgo)
	_, err := c.br.Peek(1)
	c.nc.SetReadDeadline(time.Time{})
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}

// put parks c for reuse, or closes it when the pool is full.
func (p *pool) put(c *conn, now time.Time) {
	c.idleSince = now
	p.mu.Lock()
	if !p.closed && len(p.idle) < p.max {
		p.idle = append(p.idle, c)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	p.discarded.Add(1)
	c.close()
}

// reap closes idle connections past their limit.
func (p *pool) reap(now time.Time) {
	p.mu.Lock()
	keep := p.idle[:0]
	var dead []*conn
	for _, c := range p.idle {
		if now.Sub(c.idleSince) < c.idleLimit {
			keep = append(keep, c)
		} else {
			dead = append(dead, c)
		}
	}
	clear(p.idle[len(keep):])
	p.idle = keep
	p.mu.Unlock()
	p.discarded.Add(uint64(len(dead)))
	for _, c := range dead {
		c.close()
	}
}

// closeAll closes every idle connection.
func (p *pool) closeAll() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.closed = true
	p.mu.Unlock()
	p.discarded.Add(uint64(len(idle)))
	for _, c := range idle {
		c.close()
	}
}

// size returns the number of idle connections.
func (p *pool) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}
