//go:build unix

package h1

import (
	"errors"
	"syscall"
)

// readable is the idle wait's probe of the socket (see conn.waitReadable):
// one recv(2) with MSG_PEEK and MSG_DONTWAIT into a byte that is not
// consumed. It reports true (stop waiting) when there are bytes to read,
// the peer closed, or the socket failed; false (wait for readability)
// when there is nothing yet. The read that follows, on the busy
// goroutine, sees whichever it was.
func readable(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EWOULDBLOCK)
}
