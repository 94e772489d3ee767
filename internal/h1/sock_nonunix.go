//go:build !unix

package h1

import "syscall"

// readable is never used off unix: idle connections wait with a one-byte
// read instead.
func readable(uintptr) bool { return true }

// peerGone cannot tell off unix: a client's departure is noticed when a
// write to it fails.
func peerGone(syscall.RawConn) bool { return false }
