//go:build !unix

package upstream

import "net"

// alive cannot probe a socket without blocking on this platform; the idle
// limit and the replay of safe requests still guard against the keep-alive
// race.
func alive(net.Conn) bool { return true }
