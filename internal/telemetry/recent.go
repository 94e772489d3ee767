package telemetry

import (
	"sync"
	"sync/atomic"
	"time"

	"candor/internal/failure"
)

// Rate windows: [Recent] counts requests in BucketWidth buckets over the
// last Buckets*BucketWidth (10 minutes).
const (
	BucketWidth = 5 * time.Second
	Buckets     = 120
	// DefaultFailures is how many failures [Recent] keeps by default.
	DefaultFailures = 100
)

// Failure is one recent failed request as served by the admin API's
// GET /failures: the record's identifying fields and its cause, with the
// cause table's explanation and fix.
type Failure struct {
	RequestID   string    `json:"request_id"`
	Time        time.Time `json:"time"`
	Method      string    `json:"method"`
	Path        string    `json:"path"`
	Route       string    `json:"route,omitempty"`
	Upstream    string    `json:"upstream,omitempty"`
	Target      string    `json:"target,omitempty"`
	Cause       string    `json:"cause"`
	Phase       string    `json:"phase"`
	Status      int       `json:"status"`
	Source      string    `json:"source"`
	Detail      string    `json:"detail,omitempty"`
	Attempts    int       `json:"attempts,omitempty"`
	Explanation string    `json:"explanation"`
	Fix         string    `json:"fix"`
}

// Rates is the request and failure counts of the last ten minutes, as
// served by GET /rates: Buckets consecutive buckets of BucketWidth, oldest
// first, the last one being the current (partial) one.
type Rates struct {
	IntervalSeconds int          `json:"interval_seconds"`
	Buckets         []RateBucket `json:"buckets"`
}

// RateBucket is one bucket of [Rates]: the requests that finished in
// [Time, Time+interval), how many of them failed, and the failures by
// cause id.
type RateBucket struct {
	Time     time.Time        `json:"time"`
	Total    int64            `json:"total"`
	Failures int64            `json:"failures"`
	ByCause  map[string]int64 `json:"by_cause,omitempty"`
}

// Recent keeps what the admin API and the dashboard show of the last
// minutes: the last N failed requests, request and failure counts per cause
// in 5-second buckets over 10 minutes, and failure counts per target and
// cause over the same window. Record is called once per finished request;
// a successful request costs one atomic increment (and, once per bucket
// width, a short lock to start a new bucket). Its methods are safe for
// concurrent use; a nil *Recent records nothing.
type Recent struct {
	now func() time.Time

	mu      sync.Mutex
	ring    []Failure // the last len(ring) failures; next is the oldest once full
	next    int
	full    bool
	buckets [Buckets]bucket
}

// bucket counts the requests of one BucketWidth. epoch (the bucket's
// start in BucketWidth units since the Unix epoch) and total are atomics so
// that successes do not lock; the failure counts are guarded by
// Recent.mu.
type bucket struct {
	epoch    atomic.Int64
	total    atomic.Int64
	failures int64
	byCause  map[failure.Kind]int64
	byTarget map[targetCause]int64
}

type targetCause struct {
	upstream, target string
	kind             failure.Kind
}

// NewRecent returns a Recent keeping the last n failures; n <= 0 means
// DefaultFailures.
func NewRecent(n int) *Recent {
	return newRecent(n, time.Now)
}

func newRecent(n int, now func() time.Time) *Recent {
	if n <= 0 {
		n = DefaultFailures
	}
	r := &Recent{now: now, ring: make([]Failure, n)}
	for i := range r.buckets {
		r.buckets[i].epoch.Store(-1)
	}
	return r
}

// epochOf returns t's bucket number.
func epochOf(t time.Time) int64 { return t.Unix() / int64(BucketWidth/time.Second) }

// Record counts rec, which must not change afterwards, in the rates and,
// when it failed, keeps it among the recent failures.
func (r *Recent) Record(rec *Record) {
	if r == nil || rec == nil {
		return
	}
	t := rec.Time.Add(rec.Total) // when the request finished
	if rec.Time.IsZero() {
		t = r.now()
	}
	e := epochOf(t)
	if !rec.Failed {
		if b := r.bucket(e); b != nil {
			b.total.Add(1)
		}
		return
	}
	row := rec.Kind.Row()
	f := Failure{
		RequestID: rec.RequestID, Time: rec.Time, Method: rec.Method, Path: rec.Path,
		Route: rec.Route, Upstream: rec.Upstream, Target: rec.Target,
		Cause: row.ID, Phase: rec.Phase.String(), Status: rec.Status, Source: rec.Source.String(),
		Detail: rec.Detail, Attempts: rec.Attempts,
		Explanation: row.Explanation, Fix: row.Fix,
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ring[r.next] = f
	r.next++
	if r.next == len(r.ring) {
		r.next, r.full = 0, true
	}
	b := r.bucketLocked(e)
	if b == nil {
		return
	}
	b.total.Add(1)
	b.failures++
	if b.byCause == nil {
		b.byCause = map[failure.Kind]int64{}
	}
	b.byCause[rec.Kind]++
	if rec.Target != "" {
		if b.byTarget == nil {
			b.byTarget = map[targetCause]int64{}
		}
		b.byTarget[targetCause{rec.Upstream, rec.Target, rec.Kind}]++
	}
}

// bucket returns epoch e's bucket, starting it if its slot holds an older
// one, or nil when the slot has already moved past e (a record finishing
// more than ten minutes late).
func (r *Recent) bucket(e int64) *bucket {
	b := &r.buckets[e%Buckets]
	switch cur := b.epoch.Load(); {
	case cur == e:
		return b
	case cur > e:
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bucketLocked(e)
}

// bucketLocked is bucket with r.mu held.
func (r *Recent) bucketLocked(e int64) *bucket {
	b := &r.buckets[e%Buckets]
	cur := b.epoch.Load()
	if cur > e {
		return nil
	}
	if cur < e {
		// Start the bucket: zero the counts before publishing the epoch,
		// so that lock-free increments land in the new bucket only.
		b.total.Store(0)
		b.failures = 0
		b.byCause = nil
		b.byTarget = nil
		b.epoch.Store(e)
	}
	return b
}

// Failures returns the recent failures, most recent first.
func (r *Recent) Failures() []Failure {
	if r == nil {
		return []Failure{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.ring)
	}
	out := make([]Failure, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, r.ring[(r.next-i+len(r.ring))%len(r.ring)])
	}
	return out
}

// Rates returns the counts of the last ten minutes, oldest bucket first;
// buckets without requests are included, with zero counts.
func (r *Recent) Rates() Rates {
	width := int64(BucketWidth / time.Second)
	out := Rates{IntervalSeconds: int(width), Buckets: make([]RateBucket, Buckets)}
	if r == nil {
		return out
	}
	last := epochOf(r.now())
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range out.Buckets {
		e := last - Buckets + 1 + int64(i)
		rb := RateBucket{Time: time.Unix(e*width, 0).UTC()}
		if e >= 0 {
			if b := &r.buckets[e%Buckets]; b.epoch.Load() == e {
				rb.Total, rb.Failures = b.total.Load(), b.failures
				if len(b.byCause) > 0 {
					rb.ByCause = make(map[string]int64, len(b.byCause))
					for k, n := range b.byCause {
						rb.ByCause[k.String()] = n
					}
				}
			}
		}
		out.Buckets[i] = rb
	}
	return out
}

// TargetCauses returns the failure counts by cause id of upstream's
// target over the last ten minutes; nil when there were none.
func (r *Recent) TargetCauses(upstream, target string) map[string]int64 {
	if r == nil {
		return nil
	}
	oldest := epochOf(r.now()) - Buckets + 1
	r.mu.Lock()
	defer r.mu.Unlock()
	var out map[string]int64
	for i := range r.buckets {
		b := &r.buckets[i]
		if b.epoch.Load() < oldest {
			continue
		}
		for tc, n := range b.byTarget {
			if tc.upstream == upstream && tc.target == target {
				if out == nil {
					out = map[string]int64{}
				}
				out[tc.kind.String()] += n
			}
		}
	}
	return out
}
