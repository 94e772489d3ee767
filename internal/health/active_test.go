package health

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"candor/internal/fault"
)

// probeInterval is the interval of every active test.
const probeInterval = 50 * time.Millisecond

// okServer is a real net/http upstream that answers 200 to every path and
// remembers the probes' User-Agent and Host.
type okServer struct {
	mu    sync.Mutex
	agent string
	host  string
	hits  atomic.Int64
	// in-flight tracking, for the one-probe-at-a-time test
	inflight, most atomic.Int64
	delay          time.Duration
}

func (s *okServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := s.inflight.Add(1)
	defer s.inflight.Add(-1)
	for {
		m := s.most.Load()
		if n <= m || s.most.CompareAndSwap(m, n) {
			break
		}
	}
	s.mu.Lock()
	s.agent, s.host = r.UserAgent(), r.Host
	s.mu.Unlock()
	if s.delay > 0 {
		t := time.NewTimer(s.delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
		}
		t.Stop()
	}
	s.hits.Add(1)
	w.Write([]byte("ok"))
}

func newOKServer(t *testing.T) (*okServer, *httptest.Server) {
	s := &okServer{}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return s, hs
}

func newFault(t *testing.T) *fault.Server {
	t.Helper()
	s, err := fault.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func addrOf(hs *httptest.Server) string { return strings.TrimPrefix(hs.URL, "http://") }

func TestActiveStatusFailure(t *testing.T) {
	bad := newFault(t)
	good, hs := newOKServer(t)
	logs := &logBuffer{}
	tr := newTransport(t, bad.URL(), hs.URL)
	c, rec := start(t, Options{
		Active: &Active{Path: "/status/500", Interval: probeInterval, Timeout: time.Second, Healthy: 2, Unhealthy: 2},
		Log:    logs.logger(),
	}, tr)
	rec.wait(t, bad.Addr(), addrOf(hs))
	rec.wait(t, addrOf(hs))
	if n := bad.Requests(); n < 2 {
		t.Fatalf("out after %d probes, want at least 2", n)
	}
	s := state(t, c, bad.Addr())
	if !s.ActiveFailing || s.Healthy || s.Ejected || s.LastCause != "status 500" || s.ProbeFailures < 2 {
		t.Fatalf("state: %+v", s)
	}

	// More probes fail; the change is logged once.
	seen := good.hits.Load()
	waitFor(t, "four more rounds", func() bool { return good.hits.Load() >= seen+4 && bad.Requests() >= 5 })
	recs := logs.records(t, "health: target failing active checks")
	if len(recs) != 1 {
		t.Fatalf("%d down records, want 1", len(recs))
	}
	r := recs[0]
	if r["level"] != "WARN" || r["upstream"] != "api" || r["target"] != bad.Addr() || r["status"] != float64(500) || r["consecutive_failures"] != float64(2) {
		t.Fatalf("down record: %v", r)
	}

	// Probes carry the User-Agent and, by default, the target's address
	// as Host.
	got := bad.Received()[0]
	if got.Method != "GET" || got.Target != "/status/500" {
		t.Errorf("probe %s %s", got.Method, got.Target)
	}
	good.mu.Lock()
	agent, host := good.agent, good.host
	good.mu.Unlock()
	if agent != "candor-health-check" || host != addrOf(hs) {
		t.Errorf("probe User-Agent %q Host %q", agent, host)
	}
}

// TestActiveRefusedRecovers: a refused target goes out, and comes back
// after Healthy passing probes once something listens on its port.
func TestActiveRefusedRecovers(t *testing.T) {
	addr, err := fault.RefusedAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, hs := newOKServer(t)
	logs := &logBuffer{}
	tr := newTransport(t, hs.URL, "http://"+addr)
	c, rec := start(t, Options{
		Active: &Active{Path: "/healthz", Host: "health.test", Interval: probeInterval, Timeout: time.Second, Healthy: 2, Unhealthy: 3},
		Log:    logs.logger(),
	}, tr)
	rec.wait(t, addrOf(hs), addr)
	rec.wait(t, addrOf(hs))
	if s := state(t, c, addr); !s.ActiveFailing || s.LastCause != "upstream_connect_refused" || s.ProbeFailures < 3 {
		t.Fatalf("state: %+v", s)
	}
	down := logs.records(t, "health: target failing active checks")
	if len(down) != 1 || down[0]["failure.kind"] != "upstream_connect_refused" || down[0]["target"] != addr {
		t.Fatalf("down records: %v", down)
	}

	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatalf("listen on the refused target's port %s: %v", addr, err)
	}
	back := &okServer{}
	srv := &http.Server{Handler: back}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	rec.wait(t, addrOf(hs), addr)
	if n := back.hits.Load(); n < 2 {
		t.Fatalf("back after %d passing probes, want 2", n)
	}
	back.mu.Lock()
	host := back.host
	back.mu.Unlock()
	if host != "health.test" {
		t.Errorf("probe Host %q, want the configured one", host)
	}
	if s := state(t, c, addr); s.ActiveFailing || !s.Healthy || s.ProbeFailures != 0 {
		t.Fatalf("state after recovery: %+v", s)
	}
	up := logs.records(t, "health: target passing active checks again")
	if len(up) != 1 || up[0]["level"] != "INFO" || up[0]["consecutive_passes"] != float64(2) {
		t.Fatalf("up records: %v", up)
	}
}

// TestActiveTimeout: a probe that gets no head within Timeout fails as a
// response timeout, not as the client's cancellation.
func TestActiveTimeout(t *testing.T) {
	slow := newFault(t)
	_, hs := newOKServer(t)
	logs := &logBuffer{}
	tr := newTransport(t, slow.URL(), hs.URL)
	c, rec := start(t, Options{
		Active: &Active{Path: "/stall-head?ms=5000", Interval: probeInterval, Timeout: 500 * time.Millisecond, Unhealthy: 1},
		Log:    logs.logger(),
	}, tr)
	rec.wait(t, slow.Addr(), addrOf(hs))
	rec.wait(t, addrOf(hs))
	down := logs.records(t, "health: target failing active checks")
	if len(down) != 1 || down[0]["failure.kind"] != "upstream_response_timeout" {
		t.Fatalf("down records: %v", down)
	}
	if s := state(t, c, slow.Addr()); s.LastCause == "client_canceled" {
		t.Fatalf("state: %+v", s)
	}
}

// TestActiveExpectRange: statuses outside ExpectLo-ExpectHi fail, inside
// pass; the default range is 200-399.
func TestActiveExpectRange(t *testing.T) {
	cases := []struct {
		name   string
		path   string
		lo, hi int
		pass   bool
	}{
		{"default passes 204", "/status/204", 0, 0, true},
		{"default passes 301", "/status/301", 0, 0, true},
		{"default fails 404", "/status/404", 0, 0, false},
		{"single status", "/status/418", 418, 0, true},
		{"range excludes", "/status/300", 200, 299, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFault(t)
			_, hs := newOKServer(t)
			tr := newTransport(t, srv.URL(), hs.URL)
			c, rec := start(t, Options{
				Active: &Active{Path: tc.path, Interval: probeInterval, Timeout: time.Second, ExpectLo: tc.lo, ExpectHi: tc.hi, Unhealthy: 1},
			}, tr)
			rec.wait(t, srv.Addr(), addrOf(hs))
			if !tc.pass {
				rec.wait(t, addrOf(hs))
				return
			}
			waitFor(t, "three probes", func() bool { return srv.Requests() >= 3 })
			if s := state(t, c, srv.Addr()); s.ActiveFailing || s.ProbeFailures != 0 {
				t.Fatalf("state: %+v", s)
			}
		})
	}
}

// TestOneProbeAtATime: a probe slower than the interval is not doubled.
func TestOneProbeAtATime(t *testing.T) {
	s, hs := newOKServer(t)
	s.delay = 3 * probeInterval
	tr := newTransport(t, hs.URL)
	start(t, Options{Active: &Active{Path: "/", Interval: probeInterval, Timeout: time.Second}}, tr)
	waitFor(t, "four probes", func() bool { return s.hits.Load() >= 4 })
	if m := s.most.Load(); m != 1 {
		t.Fatalf("%d probes of one target at once", m)
	}
}

// TestCloseEndsProbes: Close cancels a probe in flight and returns without
// waiting for its Timeout.
func TestCloseEndsProbes(t *testing.T) {
	stall := newFault(t)
	tr := newTransport(t, stall.URL())
	rec := newRecorder(t)
	c := New(Options{Active: &Active{Path: "/stall-head", Interval: probeInterval, Timeout: time.Minute}}, tr, rec.onChange)
	c.Start()
	waitFor(t, "a probe in flight", func() bool { return stall.Requests() >= 1 })
	done := make(chan struct{})
	go func() {
		c.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Fatal("Close did not return")
	}
	c.Close()
	c.Start() // after Close: nothing
	if s := state(t, c, stall.Addr()); s.ActiveFailing || s.ProbeFailures != 0 {
		t.Fatalf("a canceled probe counted: %+v", s)
	}
}

// TestStartPublishesOnce: Start publishes the initial set (all targets) even
// with no checks at all, and Close before Start is harmless.
func TestStartPublishesOnce(t *testing.T) {
	_, hs := newOKServer(t)
	tr := newTransport(t, hs.URL)
	c, rec := start(t, Options{}, tr)
	rec.wait(t, addrOf(hs))
	c.Start()
	select {
	case got := <-rec.ch:
		t.Fatalf("second Start published %q", got)
	default:
	}

	closed := New(Options{}, tr, rec.onChange)
	closed.Close()
	closed.Start()
	select {
	case got := <-rec.ch:
		t.Fatalf("Start after Close published %q", got)
	default:
	}
}
