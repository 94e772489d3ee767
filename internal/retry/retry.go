// Package retry decides whether a failed attempt may be repeated on another
// target: the replay rules (RFC 9110 §9.2.2 idempotency, Idempotency-Key,
// a replayable body, and the cause table's retry column), a retry budget
// that caps retries to a fraction of recent traffic, and jittered
// exponential back-off.
package retry

import (
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	"candor/internal/failure"
)

// Idempotent reports the idempotent methods of RFC 9110 §9.2.2.
func Idempotent(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE":
		return true
	}
	return false
}

// Replayable reports whether a request that may have reached an upstream
// may be sent again: its method is idempotent or it carries
// Idempotency-Key, and bodyReplayable says its body (if any) can be
// produced again.
func Replayable(method string, h http.Header, bodyReplayable bool) bool {
	return bodyReplayable && (Idempotent(method) || h.Get("Idempotency-Key") != "")
}

// Safe reports whether the failure fe may be retried on another target,
// by the cause table's retry column: always when nothing was sent, only
// for replayable requests when the request may have been processed, never
// otherwise.
func Safe(fe *failure.Error, replayable bool) bool {
	switch fe.Kind.Row().Retry {
	case failure.RetryAlways:
		return fe.BytesSent == 0 || replayable
	case failure.RetryIfReplayable:
		// Once response bytes arrived, the upstream answered: not a
		// request that died before its response.
		return replayable && fe.BytesReceived == 0
	}
	return false
}

// Backoff returns the wait before attempt n (n >= 2: the first retry),
// "full jitter": uniformly random in [0, min(max, base * 2^(n-2))].
func Backoff(n int, base, max time.Duration) time.Duration {
	if base <= 0 {
		return 0
	}
	d := base
	for i := 2; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return time.Duration(rand.Int64N(int64(d) + 1))
}

// window is the length of the budget's sliding window, in one-second
// buckets.
const window = 10

// Budget caps retries to Ratio of the requests of the last 10 seconds,
// plus MinPerSecond retries per second whatever the traffic, so that a
// failing upstream cannot be hammered by a retry storm. It is safe for
// concurrent use and takes no lock: a bucket is reset by whichever
// goroutine first sees its second change, so counts near a second's
// boundary are approximate by design.
type Budget struct {
	ratio float64
	floor int64
	now   func() time.Time
	b     [window]bucket
}

type bucket struct {
	sec      atomic.Int64
	requests atomic.Int64
	retries  atomic.Int64
}

// NewBudget returns a budget; now may be nil for time.Now.
func NewBudget(ratio float64, minPerSecond int, now func() time.Time) *Budget {
	if now == nil {
		now = time.Now
	}
	return &Budget{ratio: ratio, floor: int64(minPerSecond) * window, now: now}
}

func (b *Budget) current() (*bucket, int64) {
	s := b.now().Unix()
	bk := &b.b[s%window]
	if old := bk.sec.Load(); old != s && bk.sec.CompareAndSwap(old, s) {
		bk.requests.Store(0)
		bk.retries.Store(0)
	}
	return bk, s
}

// Request counts one request (not its retries).
func (b *Budget) Request() {
	bk, _ := b.current()
	bk.requests.Add(1)
}

// totals sums the window's buckets.
func (b *Budget) totals(s int64) (requests, retries int64) {
	for i := range b.b {
		bk := &b.b[i]
		if sec := bk.sec.Load(); sec > s-window && sec <= s {
			requests += bk.requests.Load()
			retries += bk.retries.Load()
		}
	}
	return requests, retries
}

// Allow reports whether one more retry fits the budget and, if it does,
// counts it.
func (b *Budget) Allow() bool {
	bk, s := b.current()
	requests, retries := b.totals(s)
	if float64(retries) >= b.ratio*float64(requests)+float64(b.floor) {
		return false
	}
	bk.retries.Add(1)
	return true
}
