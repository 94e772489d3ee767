package proxy_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"candor/internal/fault"

	"github.com/google/go-cmp/cmp"
)

// End-to-end tests of upstream resilience (issue 4): balancing, health,
// circuit breaking, safe retries and the keep-alive race, through the real
// gateway on loopback. Where a target must die the way a crashed process
// does, it is a child process (see main_test.go) killed with SIGKILL.

// eventually polls cond until it holds, failing the test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// resilienceConfig is a configuration with one route "r" to upstream "u".
// route and upstream are YAML lines added to the route and to the upstream
// (indented here); targets are YAML flow mappings.
func resilienceConfig(route, upstream string, targets ...string) string {
	indent := func(s string) string {
		var b strings.Builder
		for line := range strings.SplitSeq(strings.TrimSpace(s), "\n") {
			if strings.TrimSpace(line) != "" {
				b.WriteString("    " + line + "\n")
			}
		}
		return b.String()
	}
	return "listen: 127.0.0.1:0\nlog: {level: debug, access: true}\nroutes:\n  - name: r\n    upstream: u\n" +
		indent(route) + "upstreams:\n  u:\n    targets: [" + strings.Join(targets, ", ") + "]\n" + indent(upstream)
}

// target is a YAML target entry for url.
func target(url string) string { return `{url: "` + url + `"}` }

// keepAliveClient is a client that pools its connections to the gateway
// (whose idle timeout is 75 s), for load.
func keepAliveClient(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 1024, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: 10 * time.Second, Transport: tr}
}

// fetch sends one request and never fails the test, so it may run on any
// goroutine. err is a transport error or a cut-off body.
func fetch(c *http.Client, method, url string, hdr map[string]string, body string) (result, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return result{}, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: b, bodyErr: err}, err
}

// try is one attempt as the request's log record tells it.
type try struct {
	target string
	status int
	cause  string
}

// triesOf returns the attempts of a request's log record: its "tries" when
// there were several, else the one attempt its target and status tell.
func triesOf(rec map[string]any) []try {
	if ts, ok := rec["tries"].([]any); ok {
		out := make([]try, 0, len(ts))
		for _, x := range ts {
			m, _ := x.(map[string]any)
			st, _ := m["status"].(float64)
			tg, _ := m["target"].(string)
			cause, _ := m["cause"].(string)
			out = append(out, try{target: tg, status: int(st), cause: cause})
		}
		return out
	}
	tg, _ := rec["target"].(string)
	if tg == "" {
		return nil // answered before any attempt (no route, overload)
	}
	if cause, _ := rec["failure.kind"].(string); cause != "" && rec["source"] == "gateway" {
		return []try{{target: tg, cause: cause}}
	}
	st, _ := rec["status"].(float64)
	return []try{{target: tg, status: int(st)}}
}

// requestRecords waits (bounded) until the log holds a record for every id
// and returns the request records by id.
func requestRecords(t *testing.T, g *gateway, ids []string) map[string]map[string]any {
	t.Helper()
	var byID map[string]map[string]any
	eventually(t, 10*time.Second, "log records of every request", func() bool {
		byID = map[string]map[string]any{}
		for _, r := range g.log.records(t) {
			if id, _ := r["request_id"].(string); id != "" {
				byID[id] = r
			}
		}
		for _, id := range ids {
			if byID[id] == nil {
				return false
			}
		}
		return true
	})
	return byID
}

// logTime returns the time a log record was written (millisecond
// precision).
func logTime(t *testing.T, rec map[string]any) time.Time {
	t.Helper()
	s, _ := rec["time"].(string)
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("log record time %q: %v", s, err)
	}
	return at
}

// sent is one request of a load run as the client saw it.
type sent struct {
	id  string
	at  time.Time // when the client sent it
	ok  bool      // 200 with a complete body
	err string
}

// TestKillOneOfThree kills one of three target processes (SIGKILL) under
// steady load of idempotent GETs. Retries on connect failure hide the
// in-flight failures from clients, passive ejection (confirmed by active
// checks) takes the dead target out, and after the ejection no attempt goes
// to it. Both counts are measured and asserted exactly.
func TestKillOneOfThree(t *testing.T) {
	kids := []*childUpstream{startChild(t, "127.0.0.1:0"), startChild(t, "127.0.0.1:0"), startChild(t, "127.0.0.1:0")}
	victim := kids[1]
	g := startGateway(t, resilienceConfig(
		"retry: {attempts: 2}",
		`balance: {policy: round_robin}
timeouts: {connect: 1s, response_header: 2s}
health:
  active: {path: /ok, interval: 100ms, timeout: 90ms}
  passive: {consecutive_failures: 1, base_ejection: 30s}`,
		target(kids[0].url()), target(kids[1].url()), target(kids[2].url())))
	c := keepAliveClient(t)

	const (
		workers = 4
		run     = 3 * time.Second
		killAt  = 700 * time.Millisecond
		// grace covers the publication of the ejection to the balancer
		// (the health checker's goroutine) and the millisecond precision
		// of log times.
		grace = 300 * time.Millisecond
	)
	var mu sync.Mutex
	var all []sent
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; i < 100_000 && time.Since(start) < run; i++ {
				s := sent{id: fmt.Sprintf("kill-%d-%d", w, i), at: time.Now()}
				res, err := fetch(c, "GET", g.base+"/ok", map[string]string{"X-Request-Id": s.id}, "")
				s.ok = err == nil && res.status == 200
				if !s.ok {
					s.err = fmt.Sprintf("%d %s %v", res.status, res.body, err)
				}
				mu.Lock()
				all = append(all, s)
				mu.Unlock()
			}
		})
	}
	timer := time.NewTimer(killAt)
	<-timer.C
	killedAt := time.Now()
	victim.kill()
	wg.Wait()

	ids := make([]string, len(all))
	for i, s := range all {
		ids[i] = s.id
	}
	byID := requestRecords(t, g, ids)

	// The ejection: the health checker's record that took the victim out
	// (passive ejection, or active checks if they were first).
	var ejectedAt time.Time
	for _, r := range g.log.records(t) {
		msg, _ := r["msg"].(string)
		if r["target"] == victim.addr && (msg == "health: target ejected" || msg == "health: target failing active checks") {
			ejectedAt = logTime(t, r)
			break
		}
	}
	if ejectedAt.IsZero() {
		t.Fatalf("the killed target %s was never taken out", victim.addr)
	}

	var clientErrors, failedOnDead, toDeadAfterEjection, retried int
	for _, s := range all {
		if !s.ok {
			clientErrors++
			t.Errorf("request %s sent %v after the kill: %s", s.id, s.at.Sub(killedAt), s.err)
		}
		tries := triesOf(byID[s.id])
		if len(tries) > 1 {
			retried++
		}
		for _, tr := range tries {
			if tr.target != victim.addr {
				continue
			}
			if tr.cause != "" {
				failedOnDead++
			}
			if s.at.After(ejectedAt.Add(grace)) {
				toDeadAfterEjection++
				t.Errorf("request %s sent %v after the ejection tried the dead target: %+v", s.id, s.at.Sub(ejectedAt), tries)
			}
		}
	}
	t.Logf("%d requests in %v; killed %s at %v, taken out %v later; failed attempts on it: %d; "+
		"requests retried: %d; client-visible errors: %d; attempts to it sent more than %v after the ejection: %d",
		len(all), run, victim.addr, killedAt.Sub(start).Round(time.Millisecond), ejectedAt.Sub(killedAt).Round(time.Millisecond),
		failedOnDead, retried, clientErrors, grace, toDeadAfterEjection)
	if failedOnDead == 0 || retried == 0 {
		t.Errorf("no failed attempt on the killed target was retried: the test did not exercise the kill")
	}
	type outcome struct{ ClientErrors, AttemptsToDeadAfterEjection int }
	if diff := cmp.Diff(outcome{}, outcome{clientErrors, toDeadAfterEjection}); diff != "" {
		t.Fatalf("kill under load (-want +got):\n%s", diff)
	}
}

// TestRecoveredTargetGetsTrafficBack kills a target process, waits until
// it gets no traffic, restarts it on the same address and waits (bounded)
// until requests reach it again: by active checks, or when the passive
// ejection ends.
func TestRecoveredTargetGetsTrafficBack(t *testing.T) {
	for _, tc := range []struct {
		name   string
		health string
		// holdOut is how long the dead target must stay out after it was
		// first seen out, past the passive ejection's end.
		holdOut time.Duration
	}{
		{
			name:    "active checks",
			health:  "active: {path: /ok, interval: 100ms, timeout: 90ms}\n  passive: {consecutive_failures: 1, base_ejection: 1s}",
			holdOut: 1500 * time.Millisecond,
		},
		{
			name:   "passive ejection ends",
			health: "passive: {consecutive_failures: 1, base_ejection: 1s}",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kids := []*childUpstream{startChild(t, "127.0.0.1:0"), startChild(t, "127.0.0.1:0"), startChild(t, "127.0.0.1:0")}
			dead := kids[1].addr
			g := startGateway(t, resilienceConfig("retry: {attempts: 2}",
				"timeouts: {connect: 1s, response_header: 2s}\nhealth:\n  "+tc.health,
				target(kids[0].url()), target(kids[1].url()), target(kids[2].url())))
			c := keepAliveClient(t)
			n := 0
			// batch sends k requests, requires each to succeed, and
			// returns how many attempts went to the dead target's address
			// and how many of those it answered.
			batch := func(k int) (attempts, answered int) {
				ids := make([]string, k)
				for i := range ids {
					n++
					ids[i] = fmt.Sprintf("recover-%d", n)
					res, err := fetch(c, "GET", g.base+"/ok", map[string]string{"X-Request-Id": ids[i]}, "")
					if err != nil || res.status != 200 {
						t.Fatalf("request %s: %d %s %v", ids[i], res.status, res.body, err)
					}
				}
				byID := requestRecords(t, g, ids)
				for _, id := range ids {
					for _, tr := range triesOf(byID[id]) {
						if tr.target == dead {
							attempts++
							if tr.status == 200 {
								answered++
							}
						}
					}
				}
				return attempts, answered
			}
			if a, ok := batch(6); a != 2 || ok != 2 {
				t.Fatalf("before the kill: %d attempts to %s, %d answered; want 2 of 6 requests", a, dead, ok)
			}

			kids[1].kill()
			eventually(t, 5*time.Second, "the dead target excluded", func() bool {
				a, _ := batch(6)
				return a == 0
			})
			if tc.holdOut > 0 {
				end := time.Now().Add(tc.holdOut)
				for i := 0; i < 1000 && time.Now().Before(end); i++ {
					if a, _ := batch(3); a != 0 {
						t.Fatalf("%v after its exclusion the dead target got %d attempts", tc.holdOut-time.Until(end), a)
					}
				}
			}

			restarted := startChild(t, dead)
			back := time.Now()
			eventually(t, 10*time.Second, "traffic back to the recovered target", func() bool {
				_, ok := batch(6)
				return ok > 0
			})
			t.Logf("%s: restarted target %s answered again %v after its restart (%d requests in all)",
				tc.name, restarted.addr, time.Since(back).Round(time.Millisecond), n)
		})
	}
}

// TestRetryBudgetCapsRetriesInFullOutage: every target refuses
// connections, each request may make 3 attempts, and the budget allows
// retries of 10% of recent requests with no floor. Passive health is off
// so that the budget, not ejection, does the capping. Over 200 sequential
// requests at most 20 retries are made.
func TestRetryBudgetCapsRetriesInFullOutage(t *testing.T) {
	var targets []string
	for range 3 {
		a, err := fault.RefusedAddr()
		if err != nil {
			t.Fatal(err)
		}
		targets = append(targets, target("http://"+a))
	}
	g := startGateway(t, resilienceConfig(
		"retry: {attempts: 3, budget_ratio: 0.1, budget_min_per_second: 0}",
		"health: {passive: {consecutive_failures: 0}}", targets...))
	const n = 200
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("outage-%d", i)
		res := get(t, g.base+"/ok", map[string]string{"X-Request-Id": ids[i]})
		wantProblem(t, res, 502, "upstream_connect_refused")
	}
	byID := requestRecords(t, g, ids)
	attempts, exhausted := 0, 0
	for _, id := range ids {
		rec := byID[id]
		tries := triesOf(rec)
		if len(tries) == 0 || len(tries) > 3 {
			t.Fatalf("request %s: %d attempts: %v", id, len(tries), rec)
		}
		for _, tr := range tries {
			if tr.cause != "upstream_connect_refused" {
				t.Fatalf("request %s: attempt %+v", id, tr)
			}
		}
		attempts += len(tries)
		if rec["retry_budget_exhausted"] == true {
			exhausted++
		}
	}
	retries := attempts - n
	t.Logf("%d requests, %d attempts: %d retries (budget %d); %d records with retry_budget_exhausted",
		n, attempts, retries, n/10, exhausted)
	if retries < 1 || retries > n/10 {
		t.Errorf("%d retries for %d requests; want 1 to %d", retries, n, n/10)
	}
	if exhausted == 0 {
		t.Errorf("no record says retry_budget_exhausted")
	}
}

// TestOverloadAnswers503AtOnce: beyond the concurrency limits (of the
// upstream, or of its only target) a request is answered 503
// upstream_overloaded with Retry-After at once, while the stalled requests
// that hold the slots still complete.
func TestOverloadAnswers503AtOnce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limits string
		// stalled is the number of stalled requests that fill the limit.
		stalled int
	}{
		{"upstream max_concurrent", "limits: {max_concurrent: 2, max_pending: 0}", 2},
		{"target_max_concurrent", "limits: {target_max_concurrent: 1}", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := faultServer(t)
			g := startGateway(t, resilienceConfig("", tc.limits+"\nhealth: {passive: {consecutive_failures: 0}}", target(up.URL())))
			c := keepAliveClient(t)
			done := make(chan result, tc.stalled)
			for range tc.stalled {
				go func() {
					res, err := fetch(c, "GET", g.base+"/stall-head?ms=2000", nil, "")
					if err != nil {
						res.status = -1
					}
					done <- res
				}()
			}
			eventually(t, 5*time.Second, "the stalled requests at the upstream", func() bool {
				return up.Requests() == int64(tc.stalled)
			})
			start := time.Now()
			res := get(t, g.base+"/ok", nil)
			took := time.Since(start)
			wantProblem(t, res, 503, "upstream_overloaded")
			rec := g.log.record(t, res.header.Get("X-Request-Id"))
			if rec["failure.kind"] != "upstream_overloaded" || rec["upstream"] != "u" {
				t.Fatalf("log record %v", rec)
			}
			t.Logf("%s: 503 upstream_overloaded (Retry-After %s) in %v", tc.name, res.header.Get("Retry-After"), took)
			if took >= 500*time.Millisecond {
				t.Fatalf("the overload answer took %v; want it at once (< 500ms)", took)
			}
			timer := time.NewTimer(10 * time.Second)
			defer timer.Stop()
			for range tc.stalled {
				select {
				case r := <-done:
					if r.status != 200 {
						t.Fatalf("a stalled request: %d %s", r.status, r.body)
					}
				case <-timer.C:
					t.Fatal("the stalled requests did not complete")
				}
			}
			if got := up.Requests(); got != int64(tc.stalled) {
				t.Fatalf("the upstream received %d requests, want %d: the refused one must not reach it", got, tc.stalled)
			}
		})
	}
}

// TestPostNeverSentTwice: two targets that close the connection after
// reading the request. A POST without Idempotency-Key reached an upstream
// and is never sent again; with Idempotency-Key, and for a PUT, it is
// retried on the other target with the identical body.
func TestPostNeverSentTwice(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method string
		hdr    map[string]string
		want   int // copies received by the two upstreams together
	}{
		{"POST", "POST", nil, 1},
		{"POST with Idempotency-Key", "POST", map[string]string{"Idempotency-Key": "k1"}, 2},
		{"PUT", "PUT", nil, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := faultServer(t), faultServer(t)
			// Passive health off: the closes must not eject a target
			// between the rows' attempts.
			g := startGateway(t, resilienceConfig("retry: {attempts: 2}", "health: {passive: {consecutive_failures: 0}}",
				target(a.URL()), target(b.URL())))
			const payload = `{"order":42,"amount":"9.99"}`
			res, err := fetch(client(), tc.method, g.base+"/close", tc.hdr, payload)
			if err != nil {
				t.Fatal(err)
			}
			wantProblem(t, res, 502, "upstream_closed_before_response")
			rec := g.log.record(t, res.header.Get("X-Request-Id"))
			var per []int
			for _, up := range []*fault.Server{a, b} {
				k := 0
				for _, r := range up.Received() {
					if r.Method != tc.method {
						continue
					}
					k++
					if string(r.Body) != payload {
						t.Errorf("%s received body %q, want %q", up.Addr(), r.Body, payload)
					}
				}
				per = append(per, k)
			}
			t.Logf("%s: upstreams received %v copies; attempts %v", tc.name, per, triesOf(rec))
			if per[0]+per[1] != tc.want || slices.Max(per) > 1 {
				t.Fatalf("upstreams received %v copies, want %d in all, at most one each", per, tc.want)
			}
			if got := len(triesOf(rec)); got != tc.want {
				t.Fatalf("log record has %d attempts, want %d: %v", got, tc.want, rec)
			}
		})
	}
}

// TestRetryOnStatus: an upstream's 503 is retried only when the route says
// so; when retries run out the client gets the upstream's own 503 (its
// body, not candor's problem), and a healthy other target answers a retry.
func TestRetryOnStatus(t *testing.T) {
	for _, tc := range []struct {
		name  string
		retry string
		// healthyOther: the second target answers 200 to anything, instead
		// of 503 to /status/503 like the first.
		healthyOther bool
		wantStatus   int
		wantAttempts int
	}{
		{"on_status unset", "retry: {attempts: 3}", false, 503, 1},
		{"on_status 503, every target 503", "retry: {attempts: 3, on_status: [503]}", false, 503, 3},
		{"on_status 503, other target healthy", "retry: {attempts: 3, on_status: [503]}", true, 200, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := faultServer(t)
			b := a
			if tc.healthyOther {
				var err error
				b, err = fault.NewScriptServer(fault.Script{Name: "ok", Cause: fault.CausePass,
					Bytes: []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}")})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { b.Close() })
			} else {
				b = faultServer(t)
			}
			g := startGateway(t, resilienceConfig(tc.retry, "", target(a.URL()), target(b.URL())))
			// Round robin alternates first attempts: of two requests, one
			// starts on a.
			for i := range 2 {
				before := a.Requests() + b.Requests()
				res := get(t, g.base+"/status/503", nil)
				got := a.Requests() + b.Requests() - before
				rec := g.log.record(t, res.header.Get("X-Request-Id"))
				tries := triesOf(rec)
				if tc.healthyOther && tries[0].target != a.Addr() {
					if i == 1 {
						t.Fatalf("no first attempt on the 503 target: %v", tries)
					}
					continue
				}
				t.Logf("%s: client got %d %s; upstreams received %d; attempts %v", tc.name, res.status, res.body, got, tries)
				type outcome struct {
					Status, Attempts    int
					Received            int64
					Source, ContentType any
				}
				want := outcome{tc.wantStatus, tc.wantAttempts, int64(tc.wantAttempts), "upstream", "application/json"}
				if diff := cmp.Diff(want, outcome{res.status, len(tries), got, rec["source"], res.header.Get("Content-Type")}); diff != "" {
					t.Fatalf("(-want +got):\n%s", diff)
				}
				if want := `{"status":503}`; tc.wantStatus == 503 && strings.TrimSpace(string(res.body)) != want {
					t.Fatalf("body %q, want the upstream's %s", res.body, want)
				}
				return
			}
		})
	}
}

// TestKeepAliveRace10k: the upstream closes each connection that stays
// idle for 1 s, and requests on each pooled connection are spaced 900 to
// 1100 ms apart, so candor keeps reusing connections just as the upstream
// closes them. Each of 400 clients has its own route and upstream (same
// server), hence its own connection pool: a shared pool is a stack, so
// under 400 clients its top connections are reused every few milliseconds
// and never reach the race. 10,000 requests, zero failures.
func TestKeepAliveRace10k(t *testing.T) {
	if testing.Short() {
		t.Skip("25 s; skipped with -short")
	}
	const (
		clients = 400
		each    = 25
	)
	up := faultServer(t)
	var cfg strings.Builder
	cfg.WriteString("listen: 127.0.0.1:0\nlog: {level: debug, access: true}\nroutes:\n")
	for i := range clients {
		fmt.Fprintf(&cfg, "  - {name: r%d, match: {host: c%d.test}, upstream: u%d}\n", i, i, i)
	}
	cfg.WriteString("upstreams:\n")
	for i := range clients {
		fmt.Fprintf(&cfg, "  u%d: {targets: [{url: %q}], timeouts: {pool_idle: 10s}}\n", i, up.URL())
	}
	g := startGateway(t, cfg.String())
	tr := &http.Transport{MaxIdleConnsPerHost: 2 * clients, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Timeout: 10 * time.Second, Transport: tr}

	var failed atomic.Int64
	var mu sync.Mutex
	var firstFailures []string
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			timer := time.NewTimer(rand.N(time.Second)) // spread the clients
			defer timer.Stop()
			for j := range each {
				<-timer.C
				req, err := http.NewRequest("GET", g.base+"/ok?idle_ms=1000", nil)
				if err != nil {
					panic(err)
				}
				req.Host = fmt.Sprintf("c%d.test", i)
				resp, err := c.Do(req)
				status := 0
				if err == nil {
					status = resp.StatusCode
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || status != 200 {
					failed.Add(1)
					mu.Lock()
					if len(firstFailures) < 10 {
						firstFailures = append(firstFailures, fmt.Sprintf("client %d request %d: %d %v", i, j, status, err))
					}
					mu.Unlock()
				}
				timer.Reset(900*time.Millisecond + rand.N(200*time.Millisecond))
			}
		})
	}
	wg.Wait()
	reused, records := 0, 0
	for _, r := range g.log.records(t) {
		if r["request_id"] != nil {
			records++
			if r["reused"] == true {
				reused++
			}
		}
	}
	t.Logf("%d requests, %d failed; %d log records, %d on a reused connection; the upstream read %d request heads",
		clients*each, failed.Load(), records, reused, up.Requests())
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed in the keep-alive race: %v", n, clients*each, firstFailures)
	}
}

// TestDropSecondRequest: the upstream reads every connection's second
// request and closes without answering. candor replays the idempotent
// request on a fresh connection, so every request succeeds; sequentially
// every request after the first costs the upstream exactly one dropped
// copy.
func TestDropSecondRequest(t *testing.T) {
	up := faultServer(t)
	g := startGateway(t, resilienceConfig("", "", target(up.URL())))
	c := keepAliveClient(t)
	const sequential = 500
	for i := range sequential {
		res, err := fetch(c, "GET", g.base+"/ok?drop_next=1", nil, "")
		if err != nil || res.status != 200 {
			t.Fatalf("sequential request %d: %d %s %v", i, res.status, res.body, err)
		}
	}
	if got, want := up.Requests(), int64(2*sequential-1); got != want {
		t.Fatalf("the upstream read %d request heads for %d sequential requests, want %d (one dropped copy each after the first)",
			got, sequential, want)
	}
	const workers, each = 8, 50
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				if res, err := fetch(c, "GET", g.base+"/ok?drop_next=1", nil, ""); err != nil || res.status != 200 {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d sequential and %d concurrent requests, %d failed; the upstream read %d request heads",
		sequential, workers*each, failed.Load(), up.Requests())
	if failed.Load() != 0 {
		t.Fatalf("%d of %d concurrent requests failed", failed.Load(), workers*each)
	}
}

// TestWeightedRoundRobinEndToEnd: weights 1, 2 and 3 split 600 sequential
// requests exactly 100/200/300, as the log records' targets show.
func TestWeightedRoundRobinEndToEnd(t *testing.T) {
	ups := []*fault.Server{faultServer(t), faultServer(t), faultServer(t)}
	var targets []string
	for i, up := range ups {
		targets = append(targets, fmt.Sprintf(`{url: %q, weight: %d}`, up.URL(), i+1))
	}
	g := startGateway(t, resilienceConfig("", "balance: {policy: round_robin}", targets...))
	c := keepAliveClient(t)
	const n = 600
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("weighted-%d", i)
		if res, err := fetch(c, "GET", g.base+"/ok", map[string]string{"X-Request-Id": ids[i]}, ""); err != nil || res.status != 200 {
			t.Fatalf("request %d: %d %v", i, res.status, err)
		}
	}
	byID := requestRecords(t, g, ids)
	count := map[string]int{}
	for _, id := range ids {
		count[byID[id]["target"].(string)]++
	}
	t.Logf("weights 1,2,3 over %d requests: %d/%d/%d", n, count[ups[0].Addr()], count[ups[1].Addr()], count[ups[2].Addr()])
	want := map[string]int{ups[0].Addr(): 100, ups[1].Addr(): 200, ups[2].Addr(): 300}
	if diff := cmp.Diff(want, count); diff != "" {
		t.Fatalf("split by target (-want +got):\n%s", diff)
	}
}
