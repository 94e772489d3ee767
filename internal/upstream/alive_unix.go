//go:build unix

package upstream

import (
	"errors"
	"net"
	"syscall"
)

// prober tells whether an idle connection can still be used: the upstream
// has neither closed it (the keep-alive race) nor sent unsolicited bytes.
// It peeks at the socket without blocking: one recv(2) with MSG_PEEK and
// MSG_DONTWAIT. Go's own deadline machinery cannot do this, since a read
// with a past deadline returns before it reaches the socket.
//
// A connection's prober is prepared at its first probe and reused, so
// that a probe allocates nothing; only the connection's owner probes it.
type prober struct {
	ready  bool
	broken bool // the socket could not be had
	rc     syscall.RawConn
	peek   func(fd uintptr) bool // nil when the connection has no socket
	live   bool
	buf    [1]byte
}

// init prepares the probe of nc.
func (p *prober) init(nc net.Conn) {
	p.ready = true
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		p.broken = true // closed: never alive
		return
	}
	p.rc = rc
	p.peek = p.recv
}

// recv is the probe's one non-blocking peek at fd.
func (p *prober) recv(fd uintptr) bool {
	n, _, rerr := syscall.Recvfrom(int(fd), p.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch {
	case errors.Is(rerr, syscall.EAGAIN), errors.Is(rerr, syscall.EWOULDBLOCK):
		p.live = true // nothing to read: idle and open
	case rerr == nil && n == 0:
		p.live = false // orderly close (FIN)
	default:
		p.live = false // data (a protocol violation on an idle connection) or an error
	}
	return true // never wait
}

// alive reports whether nc, the prober's connection, can be used; a
// connection without a socket (not a syscall.Conn) is assumed alive.
func (p *prober) alive(nc net.Conn) bool {
	if !p.ready {
		p.init(nc)
	}
	if p.peek == nil {
		return !p.broken
	}
	p.live = false
	err := p.rc.Read(p.peek)
	return err == nil && p.live
}
