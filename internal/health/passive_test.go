package health

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"candor/internal/failure"
	"candor/internal/upstream"
)

// Passive tests never dial: the targets are addresses nobody contacts.
var (
	addrA = "127.0.0.1:10001"
	addrB = "127.0.0.1:10002"
	addrC = "127.0.0.1:10003"
	addrD = "127.0.0.1:10004"
)

func passiveTransport(t *testing.T, n int) (*upstream.Transport, []string) {
	t.Helper()
	addrs := []string{addrA, addrB, addrC, addrD}[:n]
	urls := make([]string, n)
	for i, a := range addrs {
		urls[i] = "http://" + a
	}
	return newTransport(t, urls...), addrs
}

var refused = failure.New(failure.ConnectRefused, "")

// fail reports n counted failures on tg.
func fail(c *Checker, tg *upstream.Target, n int) {
	for range n {
		c.Report(tg, refused, 0)
	}
}

func TestPassiveThreshold(t *testing.T) {
	clk := newClock()
	tr, addrs := passiveTransport(t, 2)
	a := tr.Targets()[0]
	c, rec := start(t, Options{
		Passive: Passive{ConsecutiveFailures: 3, BaseEjection: 10 * time.Second, MaxEjection: time.Minute, MaxEjectedPercent: 50},
		Now:     clk.Now,
	}, tr)
	rec.wait(t, addrs...)

	fail(c, a, 2)
	c.Report(a, nil, 200)
	fail(c, a, 2)
	if s := state(t, c, addrA); s.Ejected || s.ConsecutiveFailures != 2 || !s.Healthy {
		t.Fatalf("after 2, success, 2 failures: %+v", s)
	}

	fail(c, a, 1)
	rec.wait(t, addrB)
	want := TargetState{
		Target:       addrA,
		Ejected:      true,
		EjectedUntil: clk.Now().Add(10 * time.Second),
		Ejections:    1,
		LastCause:    "upstream_connect_refused",
	}
	if diff := cmp.Diff(want, state(t, c, addrA)); diff != "" {
		t.Fatalf("state after ejection (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(TargetState{Target: addrB, Healthy: true}, state(t, c, addrB)); diff != "" {
		t.Fatalf("untouched target (-want +got):\n%s", diff)
	}
}

// TestEjectionGrowsAndDecays: the n-th ejection lasts n × base up to max;
// each whole max of quiet after an ejection takes one step off.
func TestEjectionGrowsAndDecays(t *testing.T) {
	const (
		base = 10 * time.Second
		most = 25 * time.Second
	)
	clk := newClock()
	tr, addrs := passiveTransport(t, 2)
	a := tr.Targets()[0]
	c, rec := start(t, Options{
		Passive: Passive{ConsecutiveFailures: 2, BaseEjection: base, MaxEjection: most, MaxEjectedPercent: 50},
		Now:     clk.Now,
	}, tr)
	rec.wait(t, addrs...)

	steps := []struct {
		name  string
		quiet time.Duration // after the previous ejection ended
		want  time.Duration
	}{
		{"first: 1x", 0, base},
		{"second: 2x", 0, 2 * base},
		{"third: capped at max", 0, most},
		{"fourth: still max", 0, most},
		{"after 2 max of quiet: two steps down, then up one", 2 * most, 2 * base},
		{"just under one max of quiet: no decay", most - time.Second, most},
		{"after 3 max of quiet: floor at zero, then 1x", 3 * most, base},
	}
	for i, st := range steps {
		clk.Advance(st.quiet)
		fail(c, a, 2)
		s := state(t, c, addrA)
		if !s.Ejected || s.Ejections != i+1 {
			t.Fatalf("%s: not ejected: %+v", st.name, s)
		}
		if got := s.EjectedUntil.Sub(clk.Now()); got != st.want {
			t.Fatalf("%s: ejected for %v, want %v", st.name, got, st.want)
		}
		rec.wait(t, addrB)

		// One nanosecond early the ejection still holds.
		clk.Advance(st.want - 1)
		c.nudge()
		if s := state(t, c, addrA); !s.Ejected {
			t.Fatalf("%s: ejection ended early", st.name)
		}
		clk.Advance(1)
		c.nudge()
		rec.wait(t, addrs...)
		if s := state(t, c, addrA); s.Ejected || !s.Healthy || s.ConsecutiveFailures != 0 {
			t.Fatalf("%s: after expiry: %+v", st.name, s)
		}
	}
}

// TestEjectionEndsOnTime: on the real clock, the Checker's own timer brings
// the target back without any further Report.
func TestEjectionEndsOnTime(t *testing.T) {
	tr, addrs := passiveTransport(t, 2)
	a := tr.Targets()[0]
	c, rec := start(t, Options{
		Passive: Passive{ConsecutiveFailures: 1, BaseEjection: 50 * time.Millisecond, MaxEjection: time.Second, MaxEjectedPercent: 50},
	}, tr)
	rec.wait(t, addrs...)
	began := time.Now()
	fail(c, a, 1)
	rec.wait(t, addrB)
	rec.wait(t, addrs...)
	if d := time.Since(began); d < 50*time.Millisecond {
		t.Fatalf("target back after %v, before its ejection ended", d)
	}
}

func TestCount5xx(t *testing.T) {
	cases := []struct {
		name     string
		count5xx bool
		statuses []int
		ejected  bool
		cause    string
	}{
		{"500s pass through without count_5xx", false, []int{500, 502, 503, 504}, false, ""},
		{"503s eject with count_5xx", true, []int{503, 503, 503}, true, "status 503"},
		{"4xx never count", true, []int{404, 429, 400, 499}, false, ""},
		{"a 500 resets the count without count_5xx", false, []int{0, 0, 500, 0, 0}, false, "upstream_connect_refused"},
		{"a 200 resets the count with count_5xx", true, []int{500, 500, 200, 500, 500}, false, "status 500"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr, addrs := passiveTransport(t, 2)
			a := tr.Targets()[0]
			c, rec := start(t, Options{
				Passive: Passive{ConsecutiveFailures: 3, MaxEjectedPercent: 50, Count5xx: tc.count5xx},
				Now:     newClock().Now,
			}, tr)
			rec.wait(t, addrs...)
			for _, st := range tc.statuses {
				if st == 0 {
					c.Report(a, refused, 0)
				} else {
					c.Report(a, nil, st)
				}
			}
			s := state(t, c, addrA)
			if s.Ejected != tc.ejected || s.LastCause != tc.cause {
				t.Fatalf("ejected %v cause %q, want %v %q", s.Ejected, s.LastCause, tc.ejected, tc.cause)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	unknownIn := func(p failure.Phase) *failure.Error {
		return &failure.Error{Kind: failure.KindUnknown, Phase: p}
	}
	cases := []struct {
		name     string
		fe       *failure.Error
		status   int
		count5xx bool
		want     outcome
	}{
		{"valid 200", nil, 200, false, success},
		{"valid 404", nil, 404, true, success},
		{"valid 500", nil, 500, false, success},
		{"valid 500 counted", nil, 500, true, failed},
		{"valid 599 counted", nil, 599, true, failed},
		{"dns", failure.New(failure.DNSFailed, ""), 0, false, failed},
		{"refused", failure.New(failure.ConnectRefused, ""), 0, false, failed},
		{"connect failed", failure.New(failure.ConnectFailed, ""), 0, false, failed},
		{"connect timeout", failure.New(failure.ConnectTimeout, ""), 0, false, failed},
		{"tls", failure.New(failure.TLSFailed, ""), 0, false, failed},
		{"tls untrusted", failure.New(failure.TLSUntrusted, ""), 0, false, failed},
		{"tls not tls", failure.New(failure.TLSNotTLS, ""), 0, false, failed},
		{"write", failure.New(failure.WriteFailed, ""), 0, false, failed},
		{"closed before response", failure.New(failure.ClosedBeforeResponse, ""), 0, false, failed},
		{"reset before response", failure.New(failure.ResetBeforeResponse, ""), 0, false, failed},
		{"response timeout", failure.New(failure.ResponseTimeout, ""), 0, false, failed},
		{"malformed status line", failure.New(failure.MalformedStatusLine, ""), 0, false, failed},
		{"malformed header", failure.New(failure.MalformedHeader, ""), 0, false, failed},
		{"invalid framing", failure.New(failure.InvalidFraming, ""), 0, false, failed},
		{"truncated body", failure.New(failure.TruncatedBody, ""), 0, false, failed},
		{"malformed chunk", failure.New(failure.MalformedChunk, ""), 0, false, failed},
		{"body timeout", failure.New(failure.BodyTimeout, ""), 0, false, failed},
		{"unknown in read_head", unknownIn(failure.PhaseReadHead), 0, false, failed},
		{"client canceled", failure.New(failure.ClientCanceled, ""), 0, false, neutral},
		{"client canceled in read_head", &failure.Error{Kind: failure.ClientCanceled, Phase: failure.PhaseReadHead}, 0, false, neutral},
		{"client body invalid", failure.New(failure.ClientBodyInvalid, ""), 0, false, neutral},
		{"response too large: the route's contract", failure.New(failure.ResponseTooLarge, ""), 0, true, neutral},
		{"contract violation: the route's contract", failure.New(failure.ContractViolation, ""), 0, true, neutral},
		{"unknown without phase", unknownIn(failure.PhaseNone), 0, false, neutral},
		{"no healthy upstream", failure.New(failure.NoHealthyUpstream, ""), 0, false, neutral},
		{"internal error", failure.New(failure.InternalError, ""), 0, false, neutral},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := classify(tc.fe, tc.status, tc.count5xx); got != tc.want {
				t.Fatalf("classify = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestNeutralKinds: the client's kinds and the route's contract neither
// count nor reset a target's failures.
func TestNeutralKinds(t *testing.T) {
	tr, addrs := passiveTransport(t, 2)
	a := tr.Targets()[0]
	c, rec := start(t, Options{
		Passive: Passive{ConsecutiveFailures: 3, MaxEjectedPercent: 50},
		Now:     newClock().Now,
	}, tr)
	rec.wait(t, addrs...)
	fail(c, a, 2)
	for range 10 {
		for _, k := range []failure.Kind{failure.ClientCanceled, failure.ClientBodyInvalid, failure.ContractViolation, failure.ResponseTooLarge} {
			c.Report(a, failure.New(k, ""), 0)
		}
	}
	if s := state(t, c, addrA); s.Ejected || s.ConsecutiveFailures != 2 || s.LastCause != "upstream_connect_refused" {
		t.Fatalf("after neutral outcomes: %+v", s)
	}
	c.Report(a, failure.New(failure.ResetBeforeResponse, ""), 0)
	rec.wait(t, addrB)
	if s := state(t, c, addrA); !s.Ejected || s.LastCause != "upstream_reset_before_response" {
		t.Fatalf("not ejected by the third real failure: %+v", s)
	}
}

func TestMaxEjectedPercent(t *testing.T) {
	cases := []struct {
		name    string
		targets int
		percent int
		want    []bool // ejected, after every target failed in order
	}{
		{"3 targets 50%: one", 3, 50, []bool{true, false, false}},
		{"3 targets 67%: two", 3, 67, []bool{true, true, false}},
		{"4 targets 50%: two", 4, 50, []bool{true, true, false, false}},
		{"4 targets 75%: three", 4, 75, []bool{true, true, true, false}},
		{"4 targets 100%: all", 4, 100, []bool{true, true, true, true}},
		{"2 targets 0%: one is always allowed", 2, 0, []bool{true, false}},
		{"1 target 50%: never", 1, 50, []bool{false}},
		{"1 target 99%: never", 1, 99, []bool{false}},
		{"1 target 100%: allowed", 1, 100, []bool{true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr, addrs := passiveTransport(t, tc.targets)
			c, rec := start(t, Options{
				Passive: Passive{ConsecutiveFailures: 2, BaseEjection: time.Minute, MaxEjection: time.Hour, MaxEjectedPercent: tc.percent},
				Now:     newClock().Now,
			}, tr)
			rec.wait(t, addrs...)
			var usable []string
			for i, tg := range tr.Targets() {
				fail(c, tg, 2)
				if !tc.want[i] {
					usable = append(usable, addrs[i])
				}
			}
			if len(usable) < len(addrs) {
				rec.wait(t, usable...)
			}
			for i, s := range c.States() {
				if s.Ejected != tc.want[i] {
					t.Errorf("%s: ejected %v, want %v", s.Target, s.Ejected, tc.want[i])
				}
				if !tc.want[i] && s.ConsecutiveFailures != 2 {
					t.Errorf("%s: a refused ejection must keep the count, got %d", s.Target, s.ConsecutiveFailures)
				}
			}
		})
	}
}

// TestCapFreedByExpiry: a target refused by the cap is ejected by its next
// failure once another ejection has ended.
func TestCapFreedByExpiry(t *testing.T) {
	clk := newClock()
	tr, addrs := passiveTransport(t, 3)
	tgs := tr.Targets()
	logs := &logBuffer{}
	c, rec := start(t, Options{
		Passive: Passive{ConsecutiveFailures: 2, BaseEjection: 10 * time.Second, MaxEjection: time.Minute, MaxEjectedPercent: 50},
		Now:     clk.Now,
		Log:     logs.logger(),
	}, tr)
	rec.wait(t, addrs...)
	fail(c, tgs[0], 2)
	rec.wait(t, addrB, addrC)
	fail(c, tgs[1], 5)
	if s := state(t, c, addrB); s.Ejected || s.ConsecutiveFailures != 5 {
		t.Fatalf("B ejected beyond the cap: %+v", s)
	}
	if n := len(logs.records(t, "health: ejection refused by max_ejected_percent")); n != 1 {
		t.Fatalf("%d refusal records, want 1", n)
	}
	// A's ejection is over, though the loop has not been told yet: the
	// next failure of B notices it.
	clk.Advance(10 * time.Second)
	fail(c, tgs[1], 1)
	rec.wait(t, addrA, addrC)
	if s := state(t, c, addrB); !s.Ejected {
		t.Fatalf("B not ejected after A came back: %+v", s)
	}
	if n := len(logs.records(t, "health: ejection ended")); n != 1 {
		t.Fatalf("%d ejection-ended records, want 1", n)
	}
	ej := logs.records(t, "health: target ejected")
	if len(ej) != 2 {
		t.Fatalf("%d ejection records, want 2", len(ej))
	}
	for _, key := range []string{"upstream", "target", "failure.kind"} {
		if ej[1][key] == nil {
			t.Errorf("ejection record without %q: %v", key, ej[1])
		}
	}
	if ej[1]["target"] != addrB || ej[1]["failure.kind"] != "upstream_connect_refused" || ej[1]["upstream"] != "api" {
		t.Errorf("ejection record: %v", ej[1])
	}
}

// TestReportConcurrent hammers Report from many goroutines while the clock
// moves, the loop publishes and States is read; run under -race.
func TestReportConcurrent(t *testing.T) {
	clk := newClock()
	tr, _ := passiveTransport(t, 4)
	tgs := tr.Targets()
	c, _ := start(t, Options{
		Passive: Passive{ConsecutiveFailures: 3, BaseEjection: time.Second, MaxEjection: 10 * time.Second, MaxEjectedPercent: 50, Count5xx: true},
		Now:     clk.Now,
	}, tr)
	outcomes := []struct {
		fe     *failure.Error
		status int
	}{
		{nil, 200}, {nil, 503}, {refused, 0}, {failure.New(failure.ResponseTimeout, ""), 0},
		{failure.New(failure.ClientCanceled, ""), 0},
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 5000 {
				o := outcomes[r.IntN(len(outcomes))]
				c.Report(tgs[r.IntN(len(tgs))], o.fe, o.status)
			}
		})
	}
	stop := make(chan struct{})
	var side sync.WaitGroup
	side.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			clk.Advance(100 * time.Millisecond)
			c.nudge()
			ejected := 0
			for _, s := range c.States() {
				if s.Ejected {
					ejected++
				}
			}
			if ejected > 2 {
				t.Errorf("%d of 4 targets ejected with max 50%%", ejected)
			}
		}
	})
	wg.Wait()
	close(stop)
	side.Wait()
	total := 0
	for _, s := range c.States() {
		total += s.Ejections
	}
	if total == 0 {
		t.Fatal("no ejections at all")
	}
}

// TestReportIgnores: reports for foreign targets, or with passive health
// off, change nothing.
func TestReportIgnores(t *testing.T) {
	tr, addrs := passiveTransport(t, 2)
	other := newTransport(t, "http://127.0.0.1:10009").Targets()[0]
	off, rec := start(t, Options{Now: newClock().Now}, tr)
	rec.wait(t, addrs...)
	fail(off, tr.Targets()[0], 100)
	fail(off, other, 100)
	for _, s := range off.States() {
		if !s.Healthy || s.ConsecutiveFailures != 0 || s.LastCause != "" {
			t.Fatalf("passive off changed state: %+v", s)
		}
	}
}

// TestReportAllocs: Report allocates nothing, success or failure below the
// threshold.
func TestReportAllocs(t *testing.T) {
	tr, _ := passiveTransport(t, 2)
	a := tr.Targets()[0]
	c := New(Options{Passive: Passive{ConsecutiveFailures: 1 << 30, Count5xx: true}}, tr, nil)
	defer c.Close()
	if n := testing.AllocsPerRun(1000, func() {
		c.Report(a, nil, 200)
		c.Report(a, refused, 0)
		c.Report(a, nil, 503)
	}); n != 0 {
		t.Fatalf("Report allocates %v times per run", n)
	}
}
