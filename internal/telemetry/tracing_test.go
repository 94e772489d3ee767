package telemetry

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"candor/internal/failure"
)

const (
	clientTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientParent = "00-" + clientTrace + "-00f067aa0ba902b7-01"
)

// testTracer returns a Tracer exporting to memory, trusting trust, and the
// exporter.
func testTracer(t *testing.T, sample float64, trust ...string) (*Tracer, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	opt := TraceOptions{ServiceName: "gw", Sample: sample, Exporter: exp}
	for _, s := range trust {
		opt.Trust = append(opt.Trust, netip.MustParsePrefix(s))
	}
	tr, err := NewTracer(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Shutdown(context.Background()) })
	return tr, exp
}

// spans flushes tr and returns the exported spans by name.
func spans(t *testing.T, tr *Tracer, exp *tracetest.InMemoryExporter) map[string][]tracetest.SpanStub {
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

func attrs(kvs []attribute.KeyValue) map[string]any {
	m := map[string]any{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

func request(remote string, hdr map[string]string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://api.test:8080/v1/users?token=secret", nil)
	r.RemoteAddr = remote
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	return r
}

// TestTraceRequest traces a request whose first attempt is refused and
// whose second gets a 200, and checks both kinds of spans whole.
func TestTraceRequest(t *testing.T) {
	tr, exp := testTracer(t, 1)
	s := tr.Start(request("192.0.2.7:5000", nil), "rid-1")
	if s.TraceID() == "" {
		t.Fatal("sampled request has no trace id")
	}
	a1 := s.StartAttempt("api", "10.0.0.7:8080", 1)
	fe := failure.New(failure.ConnectRefused, "")
	a1.End(0, fe)
	a2 := s.StartAttempt("api", "10.0.0.8:8080", 2)
	a2.End(200, nil)
	s.End(&Record{Route: "users", Status: 200, Source: SourceUpstream, Upstream: "api", Attempts: 2})

	got := spans(t, tr, exp)
	req := got["candor.request"]
	if len(req) != 1 || len(got["candor.attempt"]) != 2 {
		t.Fatalf("spans: %v", got)
	}
	if req[0].SpanKind != trace.SpanKindServer || req[0].Parent.IsValid() {
		t.Fatalf("request span kind %v parent %v", req[0].SpanKind, req[0].Parent)
	}
	if req[0].SpanContext.TraceID().String() != s.TraceID() {
		t.Fatalf("trace id %s, record has %s", req[0].SpanContext.TraceID(), s.TraceID())
	}
	if v, ok := req[0].Resource.Set().Value("service.name"); !ok || v.AsString() != "gw" {
		t.Fatalf("resource %v", req[0].Resource)
	}
	want := map[string]any{
		"http.request.method": "GET", "url.path": "/v1/users", "server.address": "api.test",
		"candor.request_id": "rid-1", "http.response.status_code": int64(200), "candor.source": "upstream",
		"candor.route": "users", "candor.upstream": "api", "candor.attempts": int64(2),
	}
	if diff := cmp.Diff(want, attrs(req[0].Attributes)); diff != "" {
		t.Fatalf("request span (-want +got):\n%s", diff)
	}
	if req[0].Status.Code != codes.Unset {
		t.Fatalf("request span status %v", req[0].Status)
	}
	wantAttempts := []map[string]any{
		{"candor.upstream": "api", "candor.target": "10.0.0.7:8080", "candor.attempt": int64(1),
			"candor.cause": "upstream_connect_refused", "candor.phase": "connect"},
		{"candor.upstream": "api", "candor.target": "10.0.0.8:8080", "candor.attempt": int64(2),
			"http.response.status_code": int64(200)},
	}
	wantStatus := []codes.Code{codes.Error, codes.Unset}
	for i, a := range got["candor.attempt"] {
		if a.SpanKind != trace.SpanKindClient || a.Parent.SpanID() != req[0].SpanContext.SpanID() || a.Parent.TraceID() != req[0].SpanContext.TraceID() {
			t.Errorf("attempt %d: kind %v parent %v, want client child of %v", i+1, a.SpanKind, a.Parent, req[0].SpanContext)
		}
		if diff := cmp.Diff(wantAttempts[i], attrs(a.Attributes)); diff != "" {
			t.Errorf("attempt %d (-want +got):\n%s", i+1, diff)
		}
		if a.Status.Code != wantStatus[i] {
			t.Errorf("attempt %d status %v, want %v", i+1, a.Status, wantStatus[i])
		}
	}
}

// TestTraceFailure: a gateway failure marks the request span as an error
// with its cause and phase; a client's own cancellation does not.
func TestTraceFailure(t *testing.T) {
	for _, tc := range []struct {
		name       string
		kind       failure.Kind
		wantStatus codes.Code
	}{
		{"refused", failure.ConnectRefused, codes.Error},
		{"client gone", failure.ClientCanceled, codes.Unset},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, exp := testTracer(t, 1)
			s := tr.Start(request("192.0.2.7:5000", nil), "rid-2")
			rec := &Record{Route: "users", Source: SourceGateway}
			rec.SetFailure(failure.New(tc.kind, "detail"))
			rec.Status = tc.kind.Status()
			s.End(rec)
			sp := spans(t, tr, exp)["candor.request"][0]
			a := attrs(sp.Attributes)
			if a["candor.cause"] != tc.kind.String() || a["candor.phase"] != rec.Phase.String() || a["candor.source"] != "gateway" || a["candor.detail"] != "detail" {
				t.Fatalf("attributes %v", a)
			}
			if sp.Status.Code != tc.wantStatus {
				t.Fatalf("status %v, want %v", sp.Status, tc.wantStatus)
			}
		})
	}
}

// TestTraceparent: a client's traceparent is continued only from a trusted
// network, its sampled flag is honoured, and each attempt propagates its
// own span as the parent.
func TestTraceparent(t *testing.T) {
	for _, tc := range []struct {
		name   string
		remote string
		hdr    map[string]string
		// ratio0 samples no new trace (tracing.sample: 0).
		ratio0 bool
		// continued: the trace is the client's; sampled: it is recorded.
		continued, sampled bool
		tracestate         string
	}{
		{name: "trusted", remote: "10.1.2.3:40000", hdr: map[string]string{"Traceparent": clientParent, "Tracestate": "vendor=x"},
			continued: true, sampled: true, tracestate: "vendor=x"},
		{name: "untrusted", remote: "192.0.2.7:40000", hdr: map[string]string{"Traceparent": clientParent, "Tracestate": "vendor=x"},
			sampled: true},
		{name: "trusted IPv4-mapped", remote: "[::ffff:10.1.2.3]:40000", hdr: map[string]string{"Traceparent": clientParent},
			continued: true, sampled: true},
		{name: "trusted not sampled", remote: "10.1.2.3:40000",
			hdr:       map[string]string{"Traceparent": "00-" + clientTrace + "-00f067aa0ba902b7-00"},
			continued: true},
		{name: "trusted sampled beats ratio 0", remote: "10.1.2.3:40000", hdr: map[string]string{"Traceparent": clientParent},
			ratio0: true, continued: true, sampled: true},
		{name: "ratio 0", remote: "192.0.2.7:40000", ratio0: true},
		{name: "trusted malformed", remote: "10.1.2.3:40000", hdr: map[string]string{"Traceparent": "00-zz-00f067aa0ba902b7-01"},
			sampled: true},
		{name: "trusted absent", remote: "10.1.2.3:40000", sampled: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sample := 1.0
			if tc.ratio0 {
				sample = 0
			}
			tr, exp := testTracer(t, sample, "10.0.0.0/8")
			s := tr.Start(request(tc.remote, tc.hdr), "rid")
			a := s.StartAttempt("api", "10.0.0.7:8080", 1)
			tp, ts := a.Fields()
			a.End(200, nil)
			s.End(&Record{Status: 200, Source: SourceUpstream})

			// What goes upstream is a valid W3C trace context whose
			// parent is the attempt's span.
			sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(),
				propagation.MapCarrier{"traceparent": tp, "tracestate": ts}))
			if !sc.IsValid() {
				t.Fatalf("traceparent %q is not valid", tp)
			}
			if got := sc.TraceID().String() == clientTrace; got != tc.continued {
				t.Fatalf("trace %s continued %v, want %v", sc.TraceID(), got, tc.continued)
			}
			if sc.IsSampled() != tc.sampled {
				t.Fatalf("sampled %v, want %v (traceparent %q)", sc.IsSampled(), tc.sampled, tp)
			}
			if ts != tc.tracestate {
				t.Fatalf("tracestate %q, want %q", ts, tc.tracestate)
			}
			wantID := ""
			if tc.sampled {
				wantID = sc.TraceID().String()
			}
			if s.TraceID() != wantID {
				t.Fatalf("TraceID %q, want %q", s.TraceID(), wantID)
			}
			got := spans(t, tr, exp)
			if !tc.sampled {
				if len(got) != 0 {
					t.Fatalf("unsampled trace exported: %v", got)
				}
				return
			}
			att := got["candor.attempt"][0]
			if att.SpanContext.SpanID() != sc.SpanID() {
				t.Fatalf("traceparent parent %s, want the attempt span %s", sc.SpanID(), att.SpanContext.SpanID())
			}
			req := got["candor.request"][0]
			if tc.continued != (req.Parent.IsRemote() && req.Parent.SpanID().String() == "00f067aa0ba902b7") {
				t.Fatalf("request span parent %v, continued %v", req.Parent, tc.continued)
			}
		})
	}
}

// TestTraceNil: without a tracer nothing is traced and nothing panics.
func TestTraceNil(t *testing.T) {
	var tr *Tracer
	s := tr.Start(request("10.1.2.3:1", map[string]string{"Traceparent": clientParent}), "rid")
	if s != nil || s.TraceID() != "" || tr.Trusted("10.1.2.3:1") {
		t.Fatal("nil tracer traces")
	}
	a := s.StartAttempt("api", "t", 1)
	if tp, ts := a.Fields(); a != nil || tp != "" || ts != "" {
		t.Fatal("nil span starts attempts")
	}
	a.End(200, nil)
	s.End(&Record{})
	if tr.Flush(context.Background()) != nil || tr.Shutdown(context.Background()) != nil {
		t.Fatal("nil tracer flush or shutdown failed")
	}
}

// TestRecordTraceID: the log record carries trace_id beside request_id
// when there is one, and no trace_id key otherwise.
func TestRecordTraceID(t *testing.T) {
	r := &Record{RequestID: "rid-1", TraceID: clientTrace, Method: "GET", Status: 200, Source: SourceUpstream}
	m := logged(t, r, slog.LevelInfo)
	if m["trace_id"] != clientTrace || m["request_id"] != "rid-1" {
		t.Fatalf("record %v", m)
	}
	r.TraceID = ""
	if _, ok := logged(t, r, slog.LevelInfo)["trace_id"]; ok {
		t.Fatal("trace_id logged without a trace")
	}
}
