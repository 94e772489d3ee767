package telemetry

import (
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"candor/internal/failure"
)

// clock is a settable time source.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.ns.Store(t.UnixNano()); return c }
func (c *clock) now() time.Time   { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) add(d time.Duration) {
	c.ns.Add(int64(d))
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC) // on a bucket boundary

func failed(c *clock, id string, k failure.Kind, target string) *Record {
	return &Record{
		Time: c.now(), RequestID: id, Method: "GET", Path: "/x", Route: "r",
		Status: k.Status(), Source: SourceGateway, Failed: true, Kind: k, Phase: k.Row().Phase,
		Detail: "d-" + id, Upstream: "u", Target: target, Attempts: 1,
	}
}

func ok(c *clock) *Record {
	return &Record{Time: c.now(), Status: 200, Source: SourceUpstream, Upstream: "u", Target: "a:1"}
}

func TestRecentFailuresRing(t *testing.T) {
	c := newClock(t0)
	r := newRecent(3, c.now)
	if got := r.Failures(); got == nil || len(got) != 0 {
		t.Fatalf("empty store: %#v, want an empty non-nil list", got)
	}
	r.Record(ok(c))
	for i := range 5 {
		r.Record(failed(c, fmt.Sprint(i), failure.ConnectRefused, "a:1"))
	}
	got := r.Failures()
	var ids []string
	for _, f := range got {
		ids = append(ids, f.RequestID)
	}
	if want := []string{"4", "3", "2"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("ids %v, want %v (most recent first, capped at 3)", ids, want)
	}
	row := failure.ConnectRefused.Row()
	want := Failure{
		RequestID: "4", Time: t0, Method: "GET", Path: "/x", Route: "r", Upstream: "u", Target: "a:1",
		Cause: "upstream_connect_refused", Phase: "connect", Status: 502, Source: "gateway",
		Detail: "d-4", Attempts: 1, Explanation: row.Explanation, Fix: row.Fix,
	}
	if got[0] != want {
		t.Fatalf("failure\n got %#v\nwant %#v", got[0], want)
	}
}

func TestRecentRates(t *testing.T) {
	c := newClock(t0)
	r := newRecent(10, c.now)
	r.Record(ok(c))
	r.Record(ok(c))
	r.Record(failed(c, "1", failure.ConnectRefused, "a:1"))
	c.add(BucketWidth)
	r.Record(ok(c))
	r.Record(failed(c, "2", failure.ResponseTimeout, "b:2"))
	r.Record(failed(c, "3", failure.NoHealthyUpstream, ""))

	rates := r.Rates()
	if rates.IntervalSeconds != 5 || len(rates.Buckets) != Buckets {
		t.Fatalf("interval %d, %d buckets", rates.IntervalSeconds, len(rates.Buckets))
	}
	last, prev := rates.Buckets[Buckets-1], rates.Buckets[Buckets-2]
	wantPrev := RateBucket{Time: t0, Total: 3, Failures: 1, ByCause: map[string]int64{"upstream_connect_refused": 1}}
	wantLast := RateBucket{Time: t0.Add(BucketWidth), Total: 3, Failures: 2,
		ByCause: map[string]int64{"upstream_response_timeout": 1, "no_healthy_upstream": 1}}
	if !reflect.DeepEqual(prev, wantPrev) || !reflect.DeepEqual(last, wantLast) {
		t.Fatalf("buckets\n got %+v %+v\nwant %+v %+v", prev, last, wantPrev, wantLast)
	}
	if first := rates.Buckets[0]; !first.Time.Equal(t0.Add(BucketWidth-(Buckets-1)*BucketWidth)) || first.Total != 0 {
		t.Fatalf("first bucket %+v", first)
	}

	if got, want := r.TargetCauses("u", "a:1"), map[string]int64{"upstream_connect_refused": 1}; !reflect.DeepEqual(got, want) {
		t.Fatalf("target causes %v, want %v", got, want)
	}
	if got := r.TargetCauses("other", "a:1"); got != nil {
		t.Fatalf("other upstream's target causes %v, want none", got)
	}

	// Ten minutes later the old buckets have left the window, and a slot
	// reused for a new bucket starts from zero.
	c.add(Buckets * BucketWidth)
	r.Record(ok(c))
	rates = r.Rates()
	var total int64
	for _, b := range rates.Buckets {
		total += b.Total
	}
	if total != 1 || rates.Buckets[Buckets-1].Total != 1 || rates.Buckets[Buckets-1].ByCause != nil {
		t.Fatalf("after 10 minutes: total %d, last %+v", total, rates.Buckets[Buckets-1])
	}
	if got := r.TargetCauses("u", "a:1"); got != nil {
		t.Fatalf("target causes after 10 minutes %v, want none", got)
	}
	// A record finishing before the slot's current bucket is dropped.
	late := ok(c)
	late.Time = t0.Add(BucketWidth)
	r.Record(late)
	if got := r.Rates().Buckets[Buckets-1].Total; got != 1 {
		t.Fatalf("late record counted: %d", got)
	}
}

func TestRecentNil(t *testing.T) {
	var r *Recent
	r.Record(&Record{Failed: true})
	if len(r.Failures()) != 0 || len(r.Rates().Buckets) != Buckets || r.TargetCauses("u", "t") != nil {
		t.Fatal("nil Recent")
	}
	if n := len(NewRecent(0).ring); n != DefaultFailures {
		t.Fatalf("default size %d", n)
	}
}

// TestRecentConcurrent counts every record exactly under concurrent
// writers and readers (run with -race).
func TestRecentConcurrent(t *testing.T) {
	c := newClock(t0)
	r := newRecent(50, c.now)
	const workers, each = 8, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if i%10 == 0 {
					r.Record(failed(c, fmt.Sprint(w, i), failure.ConnectRefused, "a:1"))
				} else {
					r.Record(ok(c))
				}
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			r.Failures()
			r.Rates()
		}
	})
	wg.Wait()
	b := r.Rates().Buckets[Buckets-1]
	if b.Total != workers*each || b.Failures != workers*each/10 || len(r.Failures()) != 50 {
		t.Fatalf("total %d failures %d kept %d", b.Total, b.Failures, len(r.Failures()))
	}
}

func BenchmarkRecentSuccess(b *testing.B) {
	r := NewRecent(0)
	rec := &Record{Time: time.Now(), Status: 200}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Record(rec)
		}
	})
}
