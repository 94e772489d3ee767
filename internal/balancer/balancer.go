// Package balancer picks an upstream target for each request. A Picker
// reads an immutable snapshot and takes no lock, so Pick may be called from
// any goroutine at any time.
package balancer

import (
	"sync/atomic"

	"candor/internal/upstream"
)

// Picker chooses a target. Pick returns nil when no target can be used; the
// caller answers 503 no_healthy_upstream.
type Picker interface {
	Pick() *upstream.Target
}

// RoundRobin cycles through its targets in order.
type RoundRobin struct {
	targets []*upstream.Target
	next    atomic.Uint64
}

// NewRoundRobin returns a round-robin picker over targets (which may be
// empty).
func NewRoundRobin(targets []*upstream.Target) *RoundRobin {
	return &RoundRobin{targets: targets}
}

// Pick returns the next target, or nil when there are none.
func (p *RoundRobin) Pick() *upstream.Target {
	n := uint64(len(p.targets))
	if n == 0 {
		return nil
	}
	return p.targets[(p.next.Add(1)-1)%n]
}

var _ Picker = (*RoundRobin)(nil)
