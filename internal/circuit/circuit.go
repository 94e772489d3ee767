// Package circuit bounds the requests in flight to an upstream (circuit
// breaking): up to MaxConcurrent run, up to MaxPending wait for a slot for
// at most PendingTimeout, and any beyond are refused at once, so that an
// overloaded upstream is answered 503 upstream_overloaded instead of being
// buried under a queue.
package circuit

import (
	"context"
	"time"
)

// Limiter is a semaphore with a bounded queue. The zero of MaxConcurrent
// means unlimited, in which case a nil *Limiter is used and every method
// is a no-op. It is safe for concurrent use.
type Limiter struct {
	slots   chan struct{}
	pending chan struct{}
	timeout time.Duration
}

// New returns a Limiter, or nil when maxConcurrent is 0 (unlimited).
func New(maxConcurrent, maxPending int, pendingTimeout time.Duration) *Limiter {
	if maxConcurrent <= 0 {
		return nil
	}
	return &Limiter{
		slots:   make(chan struct{}, maxConcurrent),
		pending: make(chan struct{}, maxPending),
		timeout: pendingTimeout,
	}
}

// Acquire takes a slot, waiting in the queue when one is free in it. It
// returns false when the queue is full, the wait timed out or ctx ended;
// the caller then answers 503 (or records the client's cancellation). A
// true result must be paired with Release.
func (l *Limiter) Acquire(ctx context.Context) bool {
	if l == nil {
		return true
	}
	select {
	case l.slots <- struct{}{}:
		return true
	default:
	}
	select {
	case l.pending <- struct{}{}:
	default:
		return false // queue full: refuse at once
	}
	defer func() { <-l.pending }()
	t := time.NewTimer(l.timeout)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// Release frees a slot taken by Acquire.
func (l *Limiter) Release() {
	if l == nil {
		return
	}
	<-l.slots
}

// InFlight returns the slots in use.
func (l *Limiter) InFlight() int {
	if l == nil {
		return 0
	}
	return len(l.slots)
}
