//go:build linux

package h1

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// tcpEstablished is Linux's TCP_ESTABLISHED (include/net/tcp_states.h),
// the state of a connection neither side has closed.
const tcpEstablished = 1

// peerGone reports whether the client's side of the connection is closed:
// its FIN arrived (CLOSE_WAIT) or it was reset (CLOSE). The kernel's TCP
// state says so whatever bytes are still unread (a pipelined request, a
// TLS close_notify), which a peek at the data could not.
func peerGone(rc syscall.RawConn) bool {
	gone := false
	rc.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			gone = err == unix.EBADF || err == unix.ENOTCONN
			return
		}
		gone = info.State != tcpEstablished
	})
	return gone
}
