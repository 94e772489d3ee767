package proxy_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"candor/internal/failure"
	"candor/internal/proxy"
	"candor/internal/router"
	"candor/internal/telemetry"
)

// recorded keeps copies of the records a Recorder is given.
type recorded struct{ recs []telemetry.Record }

func (r *recorded) Record(rec *telemetry.Record) { r.recs = append(r.recs, *rec) }

// rejectHandler is a Handler with a log, a recorder and metrics, and no
// routes (a refused request never reaches the router).
func rejectHandler(t *testing.T) (*proxy.Handler, *logBuffer, *recorded, *prometheus.Registry) {
	t.Helper()
	lb := &logBuffer{}
	rec := &recorded{}
	reg := prometheus.NewRegistry()
	m := telemetry.NewMetrics(reg)
	h := proxy.New(&proxy.Table{Router: router.New(nil)}, proxy.Options{Log: newTestLogger(lb), Recorder: rec, Metrics: m})
	return h, lb, rec, reg
}

// requestsTotal returns the candor_requests_total series of reg as
// "route|upstream|code_class|source|cause" -> value.
func requestsTotal(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "candor_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			key := l["route"] + "|" + l["upstream"] + "|" + l["code_class"] + "|" + l["source"] + "|" + l["cause"]
			out[key] = m.GetCounter().GetValue()
		}
	}
	return out
}

// TestRejectPartialRequests renders refusals of requests the server gave up
// on at different points: nothing parsed, a method and a raw target only,
// a full head; and a nil request.
func TestRejectPartialRequests(t *testing.T) {
	cases := []struct {
		name   string
		req    *http.Request
		kind   failure.Kind
		detail string
		// wantMethod, wantPath and wantPeer are the record's fields.
		wantMethod, wantPath, wantPeer string
		wantType                       string
	}{
		{
			name: "nothing parsed", req: &http.Request{RemoteAddr: "192.0.2.7:4242"},
			kind: failure.RequestMalformed, detail: `request line: "\x00GET"`,
			wantPeer: "192.0.2.7:4242", wantType: "application/problem+json",
		},
		{
			name: "method and raw target",
			req: &http.Request{Method: "GET", RequestURI: "/a\x01b?secret=1", RemoteAddr: "[2001:db8::1]:5000",
				Header: http.Header{}},
			kind: failure.RequestLineTooLong, wantMethod: "GET", wantPath: `/a\x01b`,
			wantPeer: "[2001:db8::1]:5000", wantType: "application/problem+json",
		},
		{
			name: "full head, browser",
			req: func() *http.Request {
				r := httptest.NewRequest("POST", "http://example.test/up?x=1", nil)
				r.Header.Set("Accept", "text/html,*/*;q=0.8")
				r.Header.Set("X-Request-Id", "client-id-1")
				return r
			}(),
			kind: failure.RequestHeaderTooLarge, wantMethod: "POST", wantPath: "/up",
			wantPeer: "192.0.2.1:1234", wantType: "text/html; charset=utf-8",
		},
		{
			name: "nil request", req: nil, kind: failure.RequestTimeout,
			wantType: "application/problem+json",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, lb, rec, reg := rejectHandler(t)
			w := httptest.NewRecorder()
			h.Reject(w, tc.req, failure.New(tc.kind, tc.detail))

			status := tc.kind.Status()
			if w.Code != status {
				t.Fatalf("status %d, want %d", w.Code, status)
			}
			if ct := w.Header().Get("Content-Type"); ct != tc.wantType {
				t.Fatalf("Content-Type %q, want %q", ct, tc.wantType)
			}
			id := w.Header().Get("X-Request-Id")
			if id == "" || !strings.Contains(w.Body.String(), id) {
				t.Fatalf("request id %q missing from the body:\n%s", id, w.Body.String())
			}
			if tc.req != nil && tc.req.Header.Get("X-Request-Id") != "" && id != tc.req.Header.Get("X-Request-Id") {
				t.Fatalf("request id %q, want the client's", id)
			}
			if tc.wantType == "application/problem+json" {
				var p problem
				if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
					t.Fatal(err)
				}
				if p.Cause != tc.kind.String() || p.Status != status || p.RequestID != id {
					t.Fatalf("problem %+v", p)
				}
			}

			logs := lb.records(t)
			if len(logs) != 1 {
				t.Fatalf("%d log records, want 1: %v", len(logs), logs)
			}
			l := logs[0]
			want := map[string]any{
				"msg": tc.kind.String(), "failure.kind": tc.kind.String(), "failure.phase": "client",
				"status": float64(status), "source": "gateway", "route": "", "request_id": id,
				"method": tc.wantMethod, "path": tc.wantPath,
			}
			if tc.wantPeer != "" {
				want["peer"] = tc.wantPeer
			}
			for k, v := range want {
				if l[k] != v {
					t.Errorf("log %s = %#v, want %#v (record %v)", k, l[k], v, l)
				}
			}
			if tc.detail != "" && l["failure.detail"] != tc.detail {
				t.Errorf("log detail %q, want %q", l["failure.detail"], tc.detail)
			}
			if _, ok := l["upstream"]; ok {
				t.Errorf("log names an upstream: %v", l)
			}

			if len(rec.recs) != 1 || rec.recs[0].Kind != tc.kind || rec.recs[0].Route != "" || rec.recs[0].Upstream != "" {
				t.Fatalf("recorder got %+v", rec.recs)
			}
			got := requestsTotal(t, reg)
			key := "||" + telemetry.CodeClass(status) + "|gateway|" + tc.kind.String()
			if len(got) != 1 || got[key] != 1 {
				t.Fatalf("requests_total %v, want %s 1", got, key)
			}
		})
	}
}

// TestRejectClientGone writes nothing for a client that went away, and
// still records the 499.
func TestRejectClientGone(t *testing.T) {
	h, lb, rec, _ := rejectHandler(t)
	w := httptest.NewRecorder()
	h.Reject(w, &http.Request{Method: "POST", RemoteAddr: "192.0.2.7:1"}, failure.New(failure.ClientCanceled, "body shorter than its Content-Length"))
	if w.Body.Len() != 0 || len(w.Header()) != 0 {
		t.Fatalf("wrote %d %v %q for a client that is gone", w.Code, w.Header(), w.Body.String())
	}
	if len(rec.recs) != 1 || rec.recs[0].Status != failure.StatusClientClosed {
		t.Fatalf("recorder got %+v", rec.recs)
	}
	if logs := lb.records(t); len(logs) != 1 || logs[0]["status"] != float64(499) {
		t.Fatalf("logs %v", logs)
	}
}

// TestRejectSanitises keeps hostile bytes of a refused request out of the
// log and the response: control characters and invalid UTF-8 are escaped,
// long values cut.
func TestRejectSanitises(t *testing.T) {
	h, lb, _, _ := rejectHandler(t)
	w := httptest.NewRecorder()
	host := "evil\r\nX-Injected: 1" + strings.Repeat("h", 500)
	r := &http.Request{Method: "G\x7fT", Host: host, RequestURI: "/\xff\xfe<script>", RemoteAddr: "192.0.2.9:9",
		Header: http.Header{"Accept": {"application/json"}}}
	h.Reject(w, r, failure.New(failure.RequestHostInvalid, ""))
	if w.Code != 400 {
		t.Fatalf("status %d", w.Code)
	}
	body := w.Body.String()
	for _, s := range []string{"evil", "script", "Injected"} {
		if strings.Contains(body, s) {
			t.Fatalf("response echoes %q:\n%s", s, body)
		}
	}
	l := lb.records(t)[0]
	if got := l["method"]; got != `G\x7fT` {
		t.Errorf("method %q", got)
	}
	if got := l["path"]; got != `/\xff\xfe<script>` {
		t.Errorf("path %q", got)
	}
	gotHost, _ := l["host"].(string)
	if strings.ContainsAny(gotHost, "\r\n") || !strings.HasPrefix(gotHost, `evil\x0d\x0aX-Injected: 1`) ||
		!strings.HasSuffix(gotHost, "...") || len(gotHost) > 200 {
		t.Errorf("host %q", gotHost)
	}
}
