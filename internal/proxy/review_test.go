package proxy_test

import (
	"strconv"
	"testing"
	"time"

	"candor/internal/fault"
)

// TestBodyFaultEjects: targets whose responses break in the body are
// ejected by passive health like any other failing target (the head's
// arrival is not reported as a success first).
func TestBodyFaultEjects(t *testing.T) {
	up := faultServer(t)
	g := startGateway(t, `listen: 127.0.0.1:0
routes:
  - {name: r, upstream: u}
upstreams:
  u:
    targets: [{url: "`+up.URL()+`"}]
    health: {passive: {consecutive_failures: 3, max_ejected_percent: 100}}
`)
	for range 3 {
		get(t, g.base+"/script/upstream_truncated_body/content_length_short", nil)
	}
	states := g.st.Generation().Upstreams["u"].Health.States()
	if len(states) != 1 || !states[0].Ejected {
		t.Fatalf("after 3 truncated bodies the target is not ejected: %+v", states)
	}
	// The checker publishes the ejection to the balancer from its own
	// goroutine: wait (bounded) for it to take effect.
	eventually(t, 5*time.Second, "the ejected target leaves the balancer", func() bool {
		return g.st.Generation().Upstreams["u"].Balancer.Usable() == 0
	})
	wantProblem(t, get(t, g.base+"/ok", nil), 503, "no_healthy_upstream")
}

// TestConsistentHashRetryGoesElsewhere: with consistent hashing, a key's
// retry after a refused connection goes to another target, not back to
// the key's own.
func TestConsistentHashRetryGoesElsewhere(t *testing.T) {
	refused, err := fault.RefusedAddr()
	if err != nil {
		t.Fatal(err)
	}
	up := faultServer(t)
	g := startGateway(t, `listen: 127.0.0.1:0
routes:
  - {name: r, upstream: u, retry: {attempts: 2, budget_min_per_second: 100}}
upstreams:
  u:
    targets: [{url: "http://`+refused+`"}, {url: "`+up.URL()+`"}]
    balance: {policy: consistent_hash, hash_on: "header:X-Key"}
    health: {passive: {consecutive_failures: 0}}
`)
	for i := range 100 {
		res := get(t, g.base+"/ok", map[string]string{"X-Key": "user-" + strconv.Itoa(i)})
		if res.status != 200 {
			t.Fatalf("key %d: %d %s", i, res.status, res.body)
		}
	}
}
