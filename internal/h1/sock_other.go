//go:build unix && !linux

package h1

import (
	"errors"
	"syscall"
)

// peerGone reports whether the client closed or reset the connection: one
// recv(2) with MSG_PEEK and MSG_DONTWAIT sees its FIN (0 bytes) or reset.
// Bytes waiting to be read (a pipelined request) hide a FIN behind them:
// the client then counts as present.
func peerGone(rc syscall.RawConn) bool {
	gone := false
	rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EWOULDBLOCK):
		case err == nil && n == 0:
			gone = true
		case err != nil:
			gone = true
		}
		return true
	})
	return gone
}
