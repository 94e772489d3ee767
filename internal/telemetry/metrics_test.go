package telemetry_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"

	"candor/internal/config"
	"candor/internal/failure"
	"candor/internal/fault"
	"candor/internal/reload"
	"candor/internal/telemetry"
)

const (
	t1 = "10.0.0.1:80"
	t2 = "10.0.0.2:80"
)

// records are one request of each shape the proxy writes.
var records = []telemetry.Record{
	// An upstream's 200, first attempt.
	{Route: "api", Upstream: "api", Target: t1, Status: 200, Source: telemetry.SourceUpstream,
		Attempts: 1, Tries: []telemetry.Try{{Attempt: 1, Target: t1, Status: 200}},
		Total: 20 * time.Millisecond, FirstByte: 5 * time.Millisecond},
	// An upstream's own 502, passed through.
	{Route: "api", Upstream: "api", Target: t1, Status: 502, Source: telemetry.SourceUpstream,
		Attempts: 1, Tries: []telemetry.Try{{Attempt: 1, Target: t1, Status: 502}},
		Total: 30 * time.Millisecond, FirstByte: 25 * time.Millisecond},
	// Refused twice: candor's 502 after one retry.
	{Route: "api", Upstream: "api", Target: t2, Status: 502, Source: telemetry.SourceGateway,
		Failed: true, Kind: failure.ConnectRefused, Attempts: 2, Tries: []telemetry.Try{
			{Attempt: 1, Target: t1, Cause: "upstream_connect_refused"},
			{Attempt: 2, Target: t2, Cause: "upstream_connect_refused"},
		}, Total: 40 * time.Millisecond},
	// Reset, and the retry budget refused the retry.
	{Route: "api", Upstream: "api", Target: t1, Status: 502, Source: telemetry.SourceGateway,
		Failed: true, Kind: failure.ResetBeforeResponse, Attempts: 1, BudgetExhausted: true,
		Tries: []telemetry.Try{{Attempt: 1, Target: t1, Cause: "upstream_reset_before_response"}},
		Total: 2 * time.Millisecond},
	// A 200 whose streamed body was cut short: the attempt's result is the
	// body's cause.
	{Route: "api", Upstream: "api", Target: t1, Status: 200, Source: telemetry.SourceUpstream,
		Failed: true, Kind: failure.TruncatedBody, Aborted: true, Attempts: 1,
		Tries: []telemetry.Try{{Attempt: 1, Target: t1, Status: 200}},
		Total: 3 * time.Second, FirstByte: time.Millisecond},
	// A response-head timeout.
	{Route: "api", Upstream: "api", Target: t2, Status: 504, Source: telemetry.SourceGateway,
		Failed: true, Kind: failure.ResponseTimeout, Attempts: 1,
		Tries: []telemetry.Try{{Attempt: 1, Target: t2, Cause: "upstream_response_timeout"}},
		Total: 5 * time.Second},
	// No usable target: no attempt.
	{Route: "parked", Upstream: "parked", Status: 503, Source: telemetry.SourceGateway,
		Failed: true, Kind: failure.NoHealthyUpstream, Total: time.Millisecond},
	// No route.
	{Status: 404, Source: telemetry.SourceGateway, Failed: true, Kind: failure.NoRoute},
	// The client went away while the body was streamed.
	{Route: "api", Upstream: "api", Target: t1, Status: 499, Source: telemetry.SourceUpstream,
		Failed: true, Kind: failure.ClientCanceled, Attempts: 1,
		Tries: []telemetry.Try{{Attempt: 1, Target: t1, Status: 200}},
		Total: 10 * time.Millisecond, FirstByte: 2 * time.Millisecond},
	// A WebSocket tunnel that lived for a minute: its duration is the
	// handshake's.
	{Route: "ws", Upstream: "api", Target: t2, Status: 101, Source: telemetry.SourceUpstream,
		Attempts: 1, Tries: []telemetry.Try{{Attempt: 1, Target: t2, Status: 101}},
		Total: time.Minute + 3*time.Millisecond, FirstByte: 3 * time.Millisecond,
		Tunnel: &telemetry.Tunnel{Protocol: "websocket", Duration: time.Minute}},
}

// TestMetricsObserve feeds records to a real registry and compares every
// counter with its exact expected value.
func TestMetricsObserve(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := telemetry.NewMetrics(reg)
	for i := range records {
		m.Observe(&records[i])
	}
	const want = `
# HELP candor_requests_total Requests answered, by route, upstream, status class (1xx-5xx, or 499 for a client that went away), source of the status (gateway or upstream) and cause id (empty when nothing failed).
# TYPE candor_requests_total counter
candor_requests_total{cause="",code_class="1xx",route="ws",source="upstream",upstream="api"} 1
candor_requests_total{cause="",code_class="2xx",route="api",source="upstream",upstream="api"} 1
candor_requests_total{cause="",code_class="5xx",route="api",source="upstream",upstream="api"} 1
candor_requests_total{cause="client_canceled",code_class="499",route="api",source="upstream",upstream="api"} 1
candor_requests_total{cause="no_healthy_upstream",code_class="5xx",route="parked",source="gateway",upstream="parked"} 1
candor_requests_total{cause="no_route",code_class="4xx",route="",source="gateway",upstream=""} 1
candor_requests_total{cause="upstream_connect_refused",code_class="5xx",route="api",source="gateway",upstream="api"} 1
candor_requests_total{cause="upstream_reset_before_response",code_class="5xx",route="api",source="gateway",upstream="api"} 1
candor_requests_total{cause="upstream_response_timeout",code_class="5xx",route="api",source="gateway",upstream="api"} 1
candor_requests_total{cause="upstream_truncated_body",code_class="2xx",route="api",source="upstream",upstream="api"} 1
# HELP candor_upstream_attempts_total Attempts sent to upstream targets, by upstream, target and result: ok (a valid response head, any status) or the cause id of the attempt's failure.
# TYPE candor_upstream_attempts_total counter
candor_upstream_attempts_total{result="client_canceled",target="10.0.0.1:80",upstream="api"} 1
candor_upstream_attempts_total{result="ok",target="10.0.0.1:80",upstream="api"} 2
candor_upstream_attempts_total{result="ok",target="10.0.0.2:80",upstream="api"} 1
candor_upstream_attempts_total{result="upstream_connect_refused",target="10.0.0.1:80",upstream="api"} 1
candor_upstream_attempts_total{result="upstream_connect_refused",target="10.0.0.2:80",upstream="api"} 1
candor_upstream_attempts_total{result="upstream_reset_before_response",target="10.0.0.1:80",upstream="api"} 1
candor_upstream_attempts_total{result="upstream_response_timeout",target="10.0.0.2:80",upstream="api"} 1
candor_upstream_attempts_total{result="upstream_truncated_body",target="10.0.0.1:80",upstream="api"} 1
# HELP candor_retries_total Attempts after a request's first (retries on another target), by route.
# TYPE candor_retries_total counter
candor_retries_total{route=""} 0
candor_retries_total{route="api"} 1
candor_retries_total{route="parked"} 0
candor_retries_total{route="ws"} 0
# HELP candor_retry_budget_exhausted_total Requests whose safe retry was refused because the route's retry budget was spent, by route.
# TYPE candor_retry_budget_exhausted_total counter
candor_retry_budget_exhausted_total{route=""} 0
candor_retry_budget_exhausted_total{route="api"} 1
candor_retry_budget_exhausted_total{route="parked"} 0
candor_retry_budget_exhausted_total{route="ws"} 0
`
	compare(t, reg, want, "candor_requests_total", "candor_upstream_attempts_total", "candor_retries_total", "candor_retry_budget_exhausted_total")

	// Histograms: sample counts and sums per series.
	hist := histograms(t, reg)
	for name, want := range map[string][2]float64{
		`candor_request_duration_seconds{route="api",source="upstream"}`: {4, 0.020 + 0.030 + 3 + 0.010},
		`candor_request_duration_seconds{route="api",source="gateway"}`:  {3, 0.040 + 0.002 + 5},
		`candor_request_duration_seconds{route="ws",source="upstream"}`:  {1, 0.003},
		`candor_request_duration_seconds{route="",source="gateway"}`:     {1, 0},
		`candor_upstream_first_byte_seconds{upstream="api"}`:             {5, 0.005 + 0.025 + 0.001 + 0.002 + 0.003},
	} {
		got, ok := hist[name]
		if !ok || got[0] != want[0] || !near(got[1], want[1]) {
			t.Errorf("%s: count, sum = %v; want %v", name, got, want)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if lint, err := promlint.NewWithMetricFamilies(mfs).Lint(); err != nil || len(lint) > 0 {
		t.Errorf("promlint: %v %+v", err, lint)
	}
}

// compare gathers reg and compares the named metric families (all when
// none is named), in the text exposition format, with want.
func compare(t *testing.T, reg prometheus.Gatherer, want string, names ...string) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	for _, mf := range mfs {
		if len(names) > 0 && !slices.Contains(names, mf.GetName()) {
			continue
		}
		if _, err := expfmt.MetricFamilyToText(&got, mf); err != nil {
			t.Fatal(err)
		}
	}
	// Gather sorts families by name; want lists them in any order.
	if diff := cmp.Diff(sortedFamilies(want), sortedFamilies(got.String())); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
}

// sortedFamilies splits exposition text into families (a HELP line and
// what follows), sorted by name.
func sortedFamilies(text string) []string {
	var fams []string
	for line := range strings.Lines(strings.TrimSpace(text) + "\n") {
		if strings.HasPrefix(line, "# HELP ") || len(fams) == 0 {
			fams = append(fams, "")
		}
		fams[len(fams)-1] += line
	}
	slices.Sort(fams)
	return fams
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

// histograms returns the sample count and sum of every histogram series in
// reg, keyed by name{labels}.
func histograms(t *testing.T, reg prometheus.Gatherer) map[string][2]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][2]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			if h == nil {
				continue
			}
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName()+`="`+lp.GetValue()+`"`)
			}
			out[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = [2]float64{float64(h.GetSampleCount()), h.GetSampleSum()}
		}
	}
	return out
}

// TestMetricsInFlight: the gauge the proxy raises around a request.
func TestMetricsInFlight(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := telemetry.NewMetrics(reg)
	m.InFlight("api").Inc()
	m.InFlight("api").Inc()
	m.InFlight("api").Dec()
	m.InFlight("web").Inc()
	m.InFlight("web").Dec()
	const want = `
# HELP candor_requests_in_flight Requests being served (open tunnels included), by route.
# TYPE candor_requests_in_flight gauge
candor_requests_in_flight{route="api"} 1
candor_requests_in_flight{route="web"} 0
`
	compare(t, reg, want, "candor_requests_in_flight")
}

// TestMetricsObserveAllocs: counting a request whose label sets were seen
// before allocates nothing.
func TestMetricsObserveAllocs(t *testing.T) {
	m := telemetry.NewMetrics(prometheus.NewRegistry())
	for i := range records {
		m.Observe(&records[i])
	}
	if n := testing.AllocsPerRun(100, func() {
		for i := range records {
			m.Observe(&records[i])
		}
	}); n != 0 {
		t.Errorf("Observe allocates %v times per round of %d records; want 0", n, len(records))
	}
}

func TestCodeClass(t *testing.T) {
	for status, want := range map[int]string{
		101: "1xx", 200: "2xx", 204: "2xx", 304: "3xx", 404: "4xx", 499: "499",
		500: "5xx", 502: "5xx", 504: "5xx", 599: "5xx", 0: "other", 600: "other",
	} {
		if got := telemetry.CodeClass(status); got != want {
			t.Errorf("CodeClass(%d) = %q, want %q", status, got, want)
		}
	}
}

// TestTargetCollector: live target state read at scrape time; targets of
// one upstream that share a host:port are one series.
func TestTargetCollector(t *testing.T) {
	stats := []telemetry.TargetStat{
		{Upstream: "api", Target: t1, Usable: true, Ejections: 0, Opened: 3, Reused: 40, Discarded: 1},
		{Upstream: "api", Target: t2, Usable: false, Ejections: 2, Opened: 7},
		{Upstream: "web", Target: t1, Usable: true, Opened: 1},
		{Upstream: "web", Target: t1, Usable: false, Ejections: 1, Opened: 1, Reused: 1},
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(telemetry.NewTargetCollector(func() []telemetry.TargetStat { return stats }))
	const want = `
# HELP candor_target_healthy 1 when the target may get new requests (not failing active health checks, not ejected, not drained), else 0.
# TYPE candor_target_healthy gauge
candor_target_healthy{target="10.0.0.1:80",upstream="api"} 1
candor_target_healthy{target="10.0.0.1:80",upstream="web"} 1
candor_target_healthy{target="10.0.0.2:80",upstream="api"} 0
# HELP candor_target_ejections_total Passive (outlier) ejections of the target since its upstream was last built.
# TYPE candor_target_ejections_total counter
candor_target_ejections_total{target="10.0.0.1:80",upstream="api"} 0
candor_target_ejections_total{target="10.0.0.1:80",upstream="web"} 1
candor_target_ejections_total{target="10.0.0.2:80",upstream="api"} 2
# HELP candor_upstream_connections_total Upstream connections by event: opened (dialed), reused (taken from the pool) or discarded (an idle connection closed instead of reused: expired, failed the liveness probe, reaped, or the pool was full).
# TYPE candor_upstream_connections_total counter
candor_upstream_connections_total{event="discarded",target="10.0.0.1:80",upstream="api"} 1
candor_upstream_connections_total{event="discarded",target="10.0.0.1:80",upstream="web"} 0
candor_upstream_connections_total{event="discarded",target="10.0.0.2:80",upstream="api"} 0
candor_upstream_connections_total{event="opened",target="10.0.0.1:80",upstream="api"} 3
candor_upstream_connections_total{event="opened",target="10.0.0.1:80",upstream="web"} 2
candor_upstream_connections_total{event="opened",target="10.0.0.2:80",upstream="api"} 7
candor_upstream_connections_total{event="reused",target="10.0.0.1:80",upstream="api"} 40
candor_upstream_connections_total{event="reused",target="10.0.0.1:80",upstream="web"} 1
candor_upstream_connections_total{event="reused",target="10.0.0.2:80",upstream="api"} 0
`
	compare(t, reg, want)
}

// TestMetricsEndToEnd runs the real gateway with an admin listener, makes
// a 200, an upstream's own 502, candor's 502 (a malformed upstream head, and
// a refused connection retried once), a 503 and a 404, then scrapes
// /metrics over HTTP and checks the exact series.
func TestMetricsEndToEnd(t *testing.T) {
	up, err := fault.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	refused, err := fault.RefusedAddr()
	if err != nil {
		t.Fatal(err)
	}
	yaml := `listen: 127.0.0.1:0
admin: {listen: 127.0.0.1:0}
routes:
  - {name: web, match: {host: web.test}, upstream: web}
  - {name: down, match: {host: down.test}, upstream: down, retry: {attempts: 2}}
  - {name: parked, match: {host: parked.test}, upstream: parked}
upstreams:
  web:
    targets: [{url: "` + up.URL() + `"}]
  down:
    targets: [{url: "http://` + refused + `"}]
  parked:
    targets: []
`
	cfg, err := config.Parse("candor.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	st, err := reload.Start(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st.Shutdown(ctx)
	}()
	base, admin := "http://"+st.GatewayAddr(), "http://"+st.AdminAddr()

	for _, r := range []struct {
		host, path string
		status     int
	}{
		{"web.test", "/ok", 200},
		{"web.test", "/status/502", 502},
		{"web.test", "/script/upstream_malformed_header/obs_fold", 502},
		{"down.test", "/", 502},
		{"parked.test", "/", 503},
		{"other.test", "/", 404},
	} {
		req, _ := http.NewRequest("GET", base+r.path, nil)
		req.Host = r.host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != r.status {
			t.Fatalf("%s%s: status %d, want %d", r.host, r.path, resp.StatusCode, r.status)
		}
	}

	web, down := up.Addr(), refused
	want := []string{
		`candor_requests_total{cause="",code_class="2xx",route="web",source="upstream",upstream="web"} 1`,
		`candor_requests_total{cause="",code_class="5xx",route="web",source="upstream",upstream="web"} 1`,
		`candor_requests_total{cause="upstream_malformed_header",code_class="5xx",route="web",source="gateway",upstream="web"} 1`,
		`candor_requests_total{cause="upstream_connect_refused",code_class="5xx",route="down",source="gateway",upstream="down"} 1`,
		`candor_requests_total{cause="no_healthy_upstream",code_class="5xx",route="parked",source="gateway",upstream="parked"} 1`,
		`candor_requests_total{cause="no_route",code_class="4xx",route="",source="gateway",upstream=""} 1`,
		`candor_upstream_attempts_total{result="ok",target="` + web + `",upstream="web"} 2`,
		`candor_upstream_attempts_total{result="upstream_malformed_header",target="` + web + `",upstream="web"} 1`,
		`candor_upstream_attempts_total{result="upstream_connect_refused",target="` + down + `",upstream="down"} 2`,
		`candor_retries_total{route="down"} 1`,
		`candor_retries_total{route="web"} 0`,
		`candor_retry_budget_exhausted_total{route="down"} 0`,
		`candor_request_duration_seconds_count{route="web",source="upstream"} 2`,
		`candor_request_duration_seconds_count{route="web",source="gateway"} 1`,
		`candor_request_duration_seconds_count{route="down",source="gateway"} 1`,
		`candor_upstream_first_byte_seconds_count{upstream="web"} 2`,
		`candor_requests_in_flight{route="web"} 0`,
		`candor_requests_in_flight{route="down"} 0`,
		`candor_target_healthy{target="` + web + `",upstream="web"} 1`,
		`candor_target_healthy{target="` + down + `",upstream="down"} 1`,
		`candor_target_ejections_total{target="` + down + `",upstream="down"} 0`,
		`candor_upstream_connections_total{event="opened",target="` + web + `",upstream="web"} 1`,
		`candor_upstream_connections_total{event="reused",target="` + web + `",upstream="web"} 2`,
		`candor_upstream_connections_total{event="discarded",target="` + web + `",upstream="web"} 0`,
		`candor_upstream_connections_total{event="opened",target="` + down + `",upstream="down"} 0`,
	}
	// A request is counted just after its response is written: poll,
	// bounded.
	var body string
	deadline := time.Now().Add(5 * time.Second)
	for {
		body = scrape(t, admin+"/metrics")
		missing := missingLines(body, want)
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks:\n%s\n\n/metrics:\n%s", strings.Join(missing, "\n"), body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if testing.Verbose() {
		for line := range strings.Lines(body) {
			if strings.HasPrefix(line, "candor_") && !strings.Contains(line, "_bucket{") {
				t.Log(strings.TrimSuffix(line, "\n"))
			}
		}
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v\n%s", url, resp.StatusCode, err, b)
	}
	return string(b)
}

// missingLines returns the lines of want that are not lines of body.
func missingLines(body string, want []string) []string {
	have := map[string]bool{}
	for line := range strings.Lines(body) {
		have[strings.TrimSuffix(line, "\n")] = true
	}
	var missing []string
	for _, w := range want {
		if !have[w] {
			missing = append(missing, w)
		}
	}
	return missing
}
