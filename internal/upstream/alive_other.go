//go:build !unix

package upstream

import "net"

// prober cannot probe a socket without blocking on this platform; the idle
// limit and the replay of safe requests still guard against the keep-alive
// race.
type prober struct{}

func (*prober) alive(net.Conn) bool { return true }
