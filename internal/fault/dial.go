package fault

import "net"

// RefusedAddr returns a loopback address, "127.0.0.1:port", on which nothing
// listens, so that connecting gets ECONNREFUSED: it listens on an ephemeral
// port and closes the listener. Another process could take the port in
// between; on loopback, in tests, that is vanishingly rare.
func RefusedAddr() (string, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}
