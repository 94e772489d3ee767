//go:build unix

package upstream

import (
	"errors"
	"net"
	"syscall"
)

// alive reports whether an idle connection can still be used: the upstream
// has neither closed it (the keep-alive race) nor sent unsolicited bytes.
// It peeks at the socket without blocking: one recv(2) with MSG_PEEK and
// MSG_DONTWAIT. Go's own deadline machinery cannot do this, since a read
// with a past deadline returns before it reaches the socket.
func alive(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var buf [1]byte
	live := false
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case errors.Is(rerr, syscall.EAGAIN), errors.Is(rerr, syscall.EWOULDBLOCK):
			live = true // nothing to read: idle and open
		case rerr == nil && n == 0:
			live = false // orderly close (FIN)
		default:
			live = false // data (a protocol violation on an idle connection) or an error
		}
		return true // never wait
	})
	return err == nil && live
}
