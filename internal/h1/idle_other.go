//go:build !linux

package h1

import (
	"errors"
	"time"
)

// idlePoller is Linux's (idle_linux.go); elsewhere idle connections wait
// on a goroutine each.
type idlePoller struct{}

func pollerOf() *idlePoller                      { return nil }
func (p *idlePoller) park(*conn, time.Time) bool { return false }
func (p *idlePoller) take(*conn) bool            { return false }

var (
	errIdleTimeout = errors.New("h1: idle timeout")
	errRepark      = errors.New("h1: wait again")
)
