package fault

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// Backlog is a loopback listener whose accept queue is full, so that a
// connect to it times out: the kernel drops the SYN instead of answering.
// Close releases it.
type Backlog struct {
	ln   *net.TCPListener
	fill []net.Conn
}

// Bounds of the queue filling in [NewBacklogFull].
const (
	backlogProbeTimeout = 200 * time.Millisecond
	backlogMaxFill      = 16
)

// NewBacklogFull returns a listener on 127.0.0.1 that never accepts and
// whose accept queue is full, to provoke a connect timeout (candor's
// upstream_connect_timeout) on loopback. It sets the listen backlog to 0
// (calling listen(2) again on a listening socket updates its backlog on
// Linux), then opens connections until one fails to connect within 200 ms,
// at most 16. Linux drops a SYN to a listener whose accept queue is full
// (net/ipv4/tcp_input.c, tcp_conn_request), so every further connect times
// out until Close. It fails if the queue never filled.
func NewBacklogFull() (*Backlog, error) {
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	b := &Backlog{ln: ln}
	rc, err := ln.SyscallConn()
	if err != nil {
		return nil, errors.Join(err, b.Close())
	}
	var lerr error
	if err := rc.Control(func(fd uintptr) { lerr = syscall.Listen(int(fd), 0) }); err != nil {
		return nil, errors.Join(err, b.Close())
	}
	if lerr != nil {
		return nil, errors.Join(lerr, b.Close())
	}
	d := net.Dialer{Timeout: backlogProbeTimeout}
	for range backlogMaxFill {
		c, err := d.Dial("tcp4", b.Addr())
		if err != nil {
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				return b, nil
			}
			return nil, errors.Join(err, b.Close())
		}
		b.fill = append(b.fill, c)
	}
	return nil, errors.Join(errors.New("fault: the accept queue never filled"), b.Close())
}

// Addr returns the listener's address, "127.0.0.1:port".
func (b *Backlog) Addr() string { return b.ln.Addr().String() }

// Close closes the connections that fill the queue and the listener.
func (b *Backlog) Close() error {
	var errs []error
	for _, c := range b.fill {
		errs = append(errs, c.Close())
	}
	b.fill = nil
	errs = append(errs, b.ln.Close())
	return errors.Join(errs...)
}
