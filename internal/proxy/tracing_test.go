package proxy_test

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"candor/internal/config"
	"candor/internal/fault"
	"candor/internal/proxy"
	"candor/internal/reload"
	"candor/internal/telemetry"
)

const (
	clientTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientSpan   = "00f067aa0ba902b7"
	clientParent = "00-" + clientTrace + "-" + clientSpan + "-01"
)

// tracedGateway serves the table of g's current generation through a
// second handler traced into memory, trusting the traceparent of clients
// in trust.
func tracedGateway(t *testing.T, g *gateway, trust string) (string, *telemetry.Tracer, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tr, err := telemetry.NewTracer(telemetry.TraceOptions{Sample: 1, Trust: []netip.Prefix{netip.MustParsePrefix(trust)}, Exporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Shutdown(context.Background()) })
	h := proxy.New(g.st.Generation().Table, proxy.Options{Tracer: tr, Log: newTestLogger(g.log), Access: true, Sample: 1})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL, tr, exp
}

// memSpans flushes tr and returns the exported spans by name.
func memSpans(t *testing.T, tr *telemetry.Tracer, exp *tracetest.InMemoryExporter) map[string][]tracetest.SpanStub {
	t.Helper()
	if err := tr.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := map[string][]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		out[s.Name] = append(out[s.Name], s)
	}
	return out
}

func attrMap(kvs []attribute.KeyValue) map[string]any {
	m := map[string]any{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

// fieldValues returns the values of the fields named name (any case) the
// upstream received.
func fieldValues(hdr [][2]string, name string) []string {
	var out []string
	for _, f := range hdr {
		if strings.EqualFold(f[0], name) {
			out = append(out, f[1])
		}
	}
	return out
}

// TestTracePropagation: the upstream gets exactly one traceparent, the
// attempt span's, continuing the client's trace only when the client is
// trusted, and the client's tracestate only then.
func TestTracePropagation(t *testing.T) {
	up := faultServer(t)
	g := startGateway(t, oneUpstream(up.URL(), ""))
	for _, tc := range []struct {
		name      string
		trust     string
		continued bool
	}{
		{"trusted", "127.0.0.0/8", true},
		{"untrusted", "10.0.0.0/8", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, tr, exp := tracedGateway(t, g, tc.trust)
			id := "trace-" + strings.ReplaceAll(tc.name, " ", "-")
			res := get(t, base+"/echo?q=secret", map[string]string{"X-Request-Id": id, "Traceparent": clientParent, "Tracestate": "vendor=x"})
			if res.status != 200 {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
			var rcv fault.Received
			if err := json.Unmarshal(res.body, &rcv); err != nil {
				t.Fatal(err)
			}
			spans := memSpans(t, tr, exp)
			if len(spans["candor.request"]) != 1 || len(spans["candor.attempt"]) != 1 {
				t.Fatalf("spans %v", spans)
			}
			req, att := spans["candor.request"][0], spans["candor.attempt"][0]
			tid := req.SpanContext.TraceID().String()
			if (tid == clientTrace) != tc.continued || (req.Parent.SpanID().String() == clientSpan) != tc.continued {
				t.Fatalf("trace %s parent %s: continued should be %v", tid, req.Parent.SpanID(), tc.continued)
			}
			if req.SpanKind != trace.SpanKindServer || att.SpanKind != trace.SpanKindClient || att.Parent.SpanID() != req.SpanContext.SpanID() {
				t.Fatalf("request %v attempt %v parent %v", req.SpanKind, att.SpanKind, att.Parent)
			}
			want := "00-" + tid + "-" + att.SpanContext.SpanID().String() + "-01"
			if got := fieldValues(rcv.Header, "traceparent"); len(got) != 1 || got[0] != want {
				t.Fatalf("upstream traceparent %q, want [%s]", got, want)
			}
			wantState := []string(nil)
			if tc.continued {
				wantState = []string{"vendor=x"}
			}
			if got := fieldValues(rcv.Header, "tracestate"); strings.Join(got, "|") != strings.Join(wantState, "|") {
				t.Fatalf("upstream tracestate %q, want %q", got, wantState)
			}
			ra := attrMap(req.Attributes)
			if ra["candor.request_id"] != id || ra["candor.route"] != "r" || ra["url.path"] != "/echo" || ra["server.address"] != "127.0.0.1" ||
				ra["http.response.status_code"] != int64(200) || ra["candor.source"] != "upstream" || ra["http.request.method"] != "GET" {
				t.Fatalf("request span attributes %v", ra)
			}
			aa := attrMap(att.Attributes)
			if aa["candor.upstream"] != "u" || aa["candor.target"] != up.Addr() || aa["candor.attempt"] != int64(1) || aa["http.response.status_code"] != int64(200) {
				t.Fatalf("attempt span attributes %v", aa)
			}
			if rec := g.log.record(t, id); rec["trace_id"] != tid {
				t.Fatalf("log trace_id %v, want %s", rec["trace_id"], tid)
			}
		})
	}
}

// TestTraceUntraced: without tracing, candor is transparent to the
// client's trace context and logs no trace_id.
func TestTraceUntraced(t *testing.T) {
	up := faultServer(t)
	g := startGateway(t, oneUpstream(up.URL(), ""))
	res := get(t, g.base+"/echo", map[string]string{"X-Request-Id": "untraced", "Traceparent": clientParent, "Tracestate": "vendor=x"})
	var rcv fault.Received
	if err := json.Unmarshal(res.body, &rcv); err != nil {
		t.Fatal(err)
	}
	if got := fieldValues(rcv.Header, "traceparent"); len(got) != 1 || got[0] != clientParent {
		t.Fatalf("upstream traceparent %q, want the client's", got)
	}
	if got := fieldValues(rcv.Header, "tracestate"); len(got) != 1 || got[0] != "vendor=x" {
		t.Fatalf("upstream tracestate %q, want the client's", got)
	}
	if rec := g.log.record(t, "untraced"); rec["trace_id"] != nil {
		t.Fatalf("untraced request logged trace_id %v", rec["trace_id"])
	}
}

// TestTraceRetries: each attempt has its own client span with its cause,
// and the request span carries the final cause as an error.
func TestTraceRetries(t *testing.T) {
	a, err := fault.RefusedAddr()
	if err != nil {
		t.Fatal(err)
	}
	b, err := fault.RefusedAddr()
	if err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, resilienceConfig("retry: {attempts: 2}", "health: {passive: {consecutive_failures: 0}}",
		target("http://"+a), target("http://"+b)))
	base, tr, exp := tracedGateway(t, g, "127.0.0.0/8")
	wantProblem(t, get(t, base+"/x", map[string]string{"X-Request-Id": "retried"}), 502, "upstream_connect_refused")
	spans := memSpans(t, tr, exp)
	req := spans["candor.request"]
	if len(req) != 1 || len(spans["candor.attempt"]) != 2 {
		t.Fatalf("spans %v", spans)
	}
	if ra := attrMap(req[0].Attributes); ra["candor.cause"] != "upstream_connect_refused" || ra["candor.phase"] != "connect" ||
		ra["candor.source"] != "gateway" || ra["http.response.status_code"] != int64(502) || ra["candor.attempts"] != int64(2) || req[0].Status.Code != codes.Error {
		t.Fatalf("request span %v %v", ra, req[0].Status)
	}
	targets := map[any]bool{}
	for i, s := range spans["candor.attempt"] {
		aa := attrMap(s.Attributes)
		if aa["candor.attempt"] != int64(i+1) || aa["candor.cause"] != "upstream_connect_refused" || s.Status.Code != codes.Error || s.Parent.SpanID() != req[0].SpanContext.SpanID() {
			t.Fatalf("attempt span %d: %v %v", i+1, aa, s.Status)
		}
		targets[aa["candor.target"]] = true
	}
	if !targets[a] || !targets[b] {
		t.Fatalf("attempt targets %v, want %s and %s", targets, a, b)
	}
}

// otlpReceiver is an OTLP/HTTP trace receiver (POST /v1/traces, protobuf,
// gzip or not) on loopback that keeps every span it is sent.
type otlpReceiver struct {
	addr  string
	mu    sync.Mutex
	spans []*tracepb.Span
	// service is the service.name of the last resource received.
	service string
	errs    []string
}

func startReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	rc := &otlpReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(srv.Close)
	rc.addr = strings.TrimPrefix(srv.URL, "http://")
	return rc
}

func (rc *otlpReceiver) serve(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, msg string) {
		rc.mu.Lock()
		rc.errs = append(rc.errs, msg)
		rc.mu.Unlock()
		http.Error(w, msg, status)
	}
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		fail(http.StatusNotFound, r.Method+" "+r.URL.Path)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		fail(http.StatusUnsupportedMediaType, "content type "+ct)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			fail(http.StatusBadRequest, err.Error())
			return
		}
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil {
		fail(http.StatusBadRequest, err.Error())
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(data, &req); err != nil {
		fail(http.StatusBadRequest, err.Error())
		return
	}
	rc.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				rc.service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			rc.spans = append(rc.spans, ss.GetSpans()...)
		}
	}
	rc.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// pbAttrs returns a span's string and int attributes.
func pbAttrs(s *tracepb.Span) map[string]any {
	m := map[string]any{}
	for _, kv := range s.GetAttributes() {
		switch v := kv.GetValue(); {
		case v.GetStringValue() != "":
			m[kv.GetKey()] = v.GetStringValue()
		default:
			m[kv.GetKey()] = v.GetIntValue()
		}
	}
	return m
}

// TestTraceOTLP runs the real gateway with tracing exported to a real OTLP
// receiver on loopback: a request from a trusted client fails (connection
// refused) and, once the gateway shuts down (which flushes the spans), the
// receiver holds its server and client spans in the client's trace, with
// the cause, and the log record names the same trace.
func TestTraceOTLP(t *testing.T) {
	rc := startReceiver(t)
	refused, err := fault.RefusedAddr()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("test.yaml", []byte(`listen: 127.0.0.1:0
log: {level: debug, access: true}
tracing:
  otlp_endpoint: `+rc.addr+`
  service_name: candor-test
  trust_traceparent: [127.0.0.0/8]
routes:
  - name: api
    upstream: u
    retry: {attempts: 1}
upstreams:
  u:
    targets: [{url: "http://`+refused+`"}]
    timeouts: {connect: 1s, response_header: 1s}
`))
	if err != nil {
		t.Fatal(err)
	}
	lb := &logBuffer{}
	st, err := reload.Start(cfg, slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := st.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}
	t.Cleanup(stop)

	res := get(t, "http://"+st.GatewayAddr()+"/v1/orders?id=7", map[string]string{"Traceparent": clientParent})
	p := wantProblem(t, res, 502, "upstream_connect_refused")
	rec := lb.record(t, p.RequestID)
	stop()

	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.errs) > 0 {
		t.Fatalf("receiver rejected exports: %q", rc.errs)
	}
	if rc.service != "candor-test" {
		t.Fatalf("service.name %q", rc.service)
	}
	var server, client *tracepb.Span
	for _, s := range rc.spans {
		switch {
		case s.GetName() == "candor.request" && s.GetKind() == tracepb.Span_SPAN_KIND_SERVER:
			server = s
		case s.GetName() == "candor.attempt" && s.GetKind() == tracepb.Span_SPAN_KIND_CLIENT:
			client = s
		}
	}
	if server == nil || client == nil || len(rc.spans) != 2 {
		t.Fatalf("received %d spans, want one server and one client span: %v", len(rc.spans), rc.spans)
	}
	if got := hex.EncodeToString(server.GetTraceId()); got != clientTrace {
		t.Fatalf("server span trace %s, want the client's %s", got, clientTrace)
	}
	if got := hex.EncodeToString(server.GetParentSpanId()); got != clientSpan {
		t.Fatalf("server span parent %s, want the client's %s", got, clientSpan)
	}
	if hex.EncodeToString(client.GetTraceId()) != clientTrace || string(client.GetParentSpanId()) != string(server.GetSpanId()) {
		t.Fatalf("client span is not the server span's child: %v", client)
	}
	sa := pbAttrs(server)
	for k, v := range map[string]any{
		"candor.cause": "upstream_connect_refused", "candor.phase": "connect", "candor.source": "gateway",
		"candor.route": "api", "candor.request_id": p.RequestID, "http.response.status_code": int64(502),
		"url.path": "/v1/orders", "http.request.method": "GET",
	} {
		if sa[k] != v {
			t.Errorf("server span %s = %v, want %v", k, sa[k], v)
		}
	}
	if server.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("server span status %v", server.GetStatus())
	}
	ca := pbAttrs(client)
	if ca["candor.cause"] != "upstream_connect_refused" || ca["candor.target"] != refused || ca["candor.upstream"] != "u" || ca["candor.attempt"] != int64(1) ||
		client.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("client span %v %v", ca, client.GetStatus())
	}
	if rec["trace_id"] != clientTrace {
		t.Errorf("log record trace_id %v, want %s", rec["trace_id"], clientTrace)
	}
}
