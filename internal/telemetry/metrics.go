package telemetry

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are candor's request metrics, fed one [Record] per request by
// [Metrics.Observe]. Label values are bounded: route and upstream names come
// from the configuration, targets from its target list, causes from the
// cause table (failure.Kind.String()); no path, request id or error text is
// ever a label value.
//
// Children are cached per label set, so that Observe on a label set seen
// before does not allocate. Its methods may be called from any goroutine.
type Metrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	attempts  *prometheus.CounterVec
	firstByte *prometheus.HistogramVec
	retries   *prometheus.CounterVec
	exhausted *prometheus.CounterVec
	inFlight  *prometheus.GaugeVec

	mu        sync.RWMutex
	reqs      map[requestKey]prometheus.Counter
	routes    map[string]*routeMetrics
	tries     map[attemptKey]prometheus.Counter
	upstreams map[string]prometheus.Observer
}

// requestKey is the label set of candor_requests_total.
type requestKey struct{ route, upstream, class, source, cause string }

// attemptKey is the label set of candor_upstream_attempts_total.
type attemptKey struct{ upstream, target, result string }

// routeMetrics are the children of one route.
type routeMetrics struct {
	gateway, upstream prometheus.Observer // duration by source
	retries           prometheus.Counter
	exhausted         prometheus.Counter
	inFlight          prometheus.Gauge
}

// DurationBuckets are the buckets, in seconds, of candor's duration
// histograms: 1 ms to 30 s.
var DurationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// ResultOK is the result label of an upstream attempt that got a valid
// response head, whatever its status.
const ResultOK = "ok"

// NewMetrics creates candor's request metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "candor_requests_total",
			Help: "Requests answered, by route, upstream, status class (1xx-5xx, or 499 for a client that went away), source of the status (gateway or upstream) and cause id (empty when nothing failed).",
		}, []string{"route", "upstream", "code_class", "source", "cause"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "candor_request_duration_seconds",
			Help:    "Time from the request's arrival to the end of its response (a tunnel's life excluded), by route and source of the status.",
			Buckets: DurationBuckets,
		}, []string{"route", "source"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "candor_upstream_attempts_total",
			Help: "Attempts sent to upstream targets, by upstream, target and result: ok (a valid response head, any status) or the cause id of the attempt's failure.",
		}, []string{"upstream", "target", "result"}),
		firstByte: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "candor_upstream_first_byte_seconds",
			Help:    "Time from the start of the attempt whose response was used to its complete response head, by upstream.",
			Buckets: DurationBuckets,
		}, []string{"upstream"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "candor_retries_total",
			Help: "Attempts after a request's first (retries on another target), by route.",
		}, []string{"route"}),
		exhausted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "candor_retry_budget_exhausted_total",
			Help: "Requests whose safe retry was refused because the route's retry budget was spent, by route.",
		}, []string{"route"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "candor_requests_in_flight",
			Help: "Requests being served (open tunnels included), by route.",
		}, []string{"route"}),
		reqs:      map[requestKey]prometheus.Counter{},
		routes:    map[string]*routeMetrics{},
		tries:     map[attemptKey]prometheus.Counter{},
		upstreams: map[string]prometheus.Observer{},
	}
	reg.MustRegister(m.requests, m.duration, m.attempts, m.firstByte, m.retries, m.exhausted, m.inFlight)
	return m
}

// CodeClass returns the code_class label of a status: "1xx" to "5xx", "499"
// for a client that went away, "other" for anything else.
func CodeClass(status int) string {
	switch {
	case status == 499:
		return "499"
	case status >= 100 && status < 600:
		return codeClasses[status/100-1]
	}
	return "other"
}

var codeClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// Observe counts r, a finished request's record.
func (m *Metrics) Observe(r *Record) {
	cause := ""
	if r.Failed {
		cause = r.Kind.String()
	}
	source := r.Source.String()
	m.request(requestKey{r.Route, r.Upstream, CodeClass(r.Status), source, cause}).Inc()

	rm := m.route(r.Route)
	d := r.Total
	if r.Tunnel != nil {
		d -= r.Tunnel.Duration
	}
	if r.Source == SourceUpstream {
		rm.upstream.Observe(d.Seconds())
	} else {
		rm.gateway.Observe(d.Seconds())
	}
	if n := max(r.Attempts, len(r.Tries)) - 1; n > 0 {
		rm.retries.Add(float64(n))
	}
	if r.BudgetExhausted {
		rm.exhausted.Inc()
	}

	if r.Upstream == "" {
		return
	}
	for i := range r.Tries {
		t := &r.Tries[i]
		result := t.Cause
		if result == "" {
			result = ResultOK
			// The last attempt's response was used: a fault of its body
			// (or of a strict route's checks) is that attempt's result.
			if i == len(r.Tries)-1 && r.Failed && t.Target == r.Target {
				result = cause
			}
		}
		m.attempt(attemptKey{r.Upstream, t.Target, result}).Inc()
	}
	if r.FirstByte > 0 {
		m.upstream(r.Upstream).Observe(r.FirstByte.Seconds())
	}
}

// InFlight returns the in-flight gauge of route, which the proxy raises
// while it serves a request of that route.
func (m *Metrics) InFlight(route string) prometheus.Gauge { return m.route(route).inFlight }

func (m *Metrics) request(k requestKey) prometheus.Counter {
	m.mu.RLock()
	c, ok := m.reqs[k]
	m.mu.RUnlock()
	if ok {
		return c
	}
	c = m.requests.WithLabelValues(k.route, k.upstream, k.class, k.source, k.cause)
	m.mu.Lock()
	m.reqs[k] = c
	m.mu.Unlock()
	return c
}

func (m *Metrics) route(name string) *routeMetrics {
	m.mu.RLock()
	rm, ok := m.routes[name]
	m.mu.RUnlock()
	if ok {
		return rm
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if rm, ok := m.routes[name]; ok {
		return rm
	}
	rm = &routeMetrics{
		gateway:   m.duration.WithLabelValues(name, SourceGateway.String()),
		upstream:  m.duration.WithLabelValues(name, SourceUpstream.String()),
		retries:   m.retries.WithLabelValues(name),
		exhausted: m.exhausted.WithLabelValues(name),
		inFlight:  m.inFlight.WithLabelValues(name),
	}
	m.routes[name] = rm
	return rm
}

func (m *Metrics) attempt(k attemptKey) prometheus.Counter {
	m.mu.RLock()
	c, ok := m.tries[k]
	m.mu.RUnlock()
	if ok {
		return c
	}
	c = m.attempts.WithLabelValues(k.upstream, k.target, k.result)
	m.mu.Lock()
	m.tries[k] = c
	m.mu.Unlock()
	return c
}

func (m *Metrics) upstream(name string) prometheus.Observer {
	m.mu.RLock()
	o, ok := m.upstreams[name]
	m.mu.RUnlock()
	if ok {
		return o
	}
	o = m.firstByte.WithLabelValues(name)
	m.mu.Lock()
	m.upstreams[name] = o
	m.mu.Unlock()
	return o
}

// TargetStat is the live state of one upstream target, read when metrics
// are scraped.
type TargetStat struct {
	Upstream, Target string
	// Usable reports that the target may get new requests: healthy (not
	// failing active checks, not ejected) and not drained.
	Usable bool
	// Ejections counts passive ejections since the target's health state
	// was made.
	Ejections uint64
	// Opened, Reused and Discarded count pooled connections (see
	// upstream.Target.ConnStats).
	Opened, Reused, Discarded uint64
}

// targetCollector exports TargetStats read at scrape time.
type targetCollector struct {
	stats                   func() []TargetStat
	healthy, ejections, cxn *prometheus.Desc
}

// NewTargetCollector returns a collector of candor_target_healthy,
// candor_target_ejections_total and candor_upstream_connections_total,
// which calls stats at every scrape. Targets of an upstream that share a
// host:port are merged into one series.
func NewTargetCollector(stats func() []TargetStat) prometheus.Collector {
	return &targetCollector{
		stats: stats,
		healthy: prometheus.NewDesc("candor_target_healthy",
			"1 when the target may get new requests (not failing active health checks, not ejected, not drained), else 0.",
			[]string{"upstream", "target"}, nil),
		ejections: prometheus.NewDesc("candor_target_ejections_total",
			"Passive (outlier) ejections of the target since its upstream was last built.",
			[]string{"upstream", "target"}, nil),
		cxn: prometheus.NewDesc("candor_upstream_connections_total",
			"Upstream connections by event: opened (dialed), reused (taken from the pool) or discarded (an idle connection closed instead of reused: expired, failed the liveness probe, reaped, or the pool was full).",
			[]string{"upstream", "target", "event"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *targetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.healthy
	ch <- c.ejections
	ch <- c.cxn
}

// Collect implements prometheus.Collector.
func (c *targetCollector) Collect(ch chan<- prometheus.Metric) {
	stats := c.stats()
	type key struct{ upstream, target string }
	seen := make(map[key]int, len(stats))
	merged := stats[:0:0]
	for _, s := range stats {
		k := key{s.Upstream, s.Target}
		if i, ok := seen[k]; ok {
			m := &merged[i]
			m.Usable = m.Usable || s.Usable
			m.Ejections += s.Ejections
			m.Opened += s.Opened
			m.Reused += s.Reused
			m.Discarded += s.Discarded
			continue
		}
		seen[k] = len(merged)
		merged = append(merged, s)
	}
	for _, s := range merged {
		healthy := 0.0
		if s.Usable {
			healthy = 1
		}
		ch <- prometheus.MustNewConstMetric(c.healthy, prometheus.GaugeValue, healthy, s.Upstream, s.Target)
		ch <- prometheus.MustNewConstMetric(c.ejections, prometheus.CounterValue, float64(s.Ejections), s.Upstream, s.Target)
		ch <- prometheus.MustNewConstMetric(c.cxn, prometheus.CounterValue, float64(s.Opened), s.Upstream, s.Target, "opened")
		ch <- prometheus.MustNewConstMetric(c.cxn, prometheus.CounterValue, float64(s.Reused), s.Upstream, s.Target, "reused")
		ch <- prometheus.MustNewConstMetric(c.cxn, prometheus.CounterValue, float64(s.Discarded), s.Upstream, s.Target, "discarded")
	}
}
