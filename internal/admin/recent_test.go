package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"candor/internal/failure"
	"candor/internal/telemetry"
)

// fakeControl serves a Recent store and a settable generation.
type fakeControl struct {
	gen    int
	recent *telemetry.Recent
}

func (f *fakeControl) Reload() error                       { return nil }
func (f *fakeControl) Status() Status                      { return Status{Generation: f.gen} }
func (f *fakeControl) Routes() []RouteState                { return nil }
func (f *fakeControl) Upstreams() []UpstreamState          { return nil }
func (f *fakeControl) SetMaintenance(string, bool) error   { return nil }
func (f *fakeControl) SetDrain(string, string, bool) error { return nil }
func (f *fakeControl) Failures() []telemetry.Failure       { return f.recent.Failures() }
func (f *fakeControl) Rates() telemetry.Rates              { return f.recent.Rates() }

func get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, string(b)
}

func TestReadyz(t *testing.T) {
	ctl := &fakeControl{}
	srv := httptest.NewServer(Handler(ctl, prometheus.NewRegistry()))
	defer srv.Close()
	if code, _, body := get(t, srv.URL+"/readyz"); code != 503 {
		t.Fatalf("no generation: %d %s, want 503", code, body)
	}
	ctl.gen = 1
	if code, _, body := get(t, srv.URL+"/readyz"); code != 200 {
		t.Fatalf("generation 1: %d %s, want 200", code, body)
	}
}

func TestFailuresAndRates(t *testing.T) {
	ctl := &fakeControl{gen: 1, recent: telemetry.NewRecent(10)}
	srv := httptest.NewServer(Handler(ctl, prometheus.NewRegistry()))
	defer srv.Close()
	now := time.Now()
	ctl.recent.Record(&telemetry.Record{Time: now, Status: 200})
	for _, id := range []string{"first", "second"} {
		ctl.recent.Record(&telemetry.Record{
			Time: now, RequestID: id, Method: "GET", Path: "/p", Route: "r", Upstream: "u", Target: "127.0.0.1:1",
			Status: 502, Failed: true, Kind: failure.ConnectRefused, Phase: failure.PhaseConnect,
		})
	}

	code, _, body := get(t, srv.URL+"/failures")
	var fs []telemetry.Failure
	if err := json.Unmarshal([]byte(body), &fs); code != 200 || err != nil {
		t.Fatalf("/failures: %d %v\n%s", code, err, body)
	}
	row := failure.ConnectRefused.Row()
	if len(fs) != 2 || fs[0].RequestID != "second" || fs[0].Cause != row.ID || fs[0].Explanation != row.Explanation || fs[0].Fix != row.Fix || fs[0].Target != "127.0.0.1:1" {
		t.Fatalf("/failures: %+v", fs)
	}

	code, _, body = get(t, srv.URL+"/rates")
	var rates telemetry.Rates
	if err := json.Unmarshal([]byte(body), &rates); code != 200 || err != nil {
		t.Fatalf("/rates: %d %v\n%s", code, err, body)
	}
	last := rates.Buckets[len(rates.Buckets)-1]
	if rates.IntervalSeconds != 5 || len(rates.Buckets) != telemetry.Buckets || last.Total != 3 || last.Failures != 2 || last.ByCause[row.ID] != 2 {
		t.Fatalf("/rates: interval %d, %d buckets, last %+v", rates.IntervalSeconds, len(rates.Buckets), last)
	}
}

// TestDashboardServed checks the page and its assets: served from the
// binary, with a strict content security policy, and with no external URL
// (the page must work without network access).
func TestDashboardServed(t *testing.T) {
	srv := httptest.NewServer(Handler(&fakeControl{gen: 1}, prometheus.NewRegistry()))
	defer srv.Close()
	for _, path := range []string{"/", "/dashboard", "/dashboard/"} {
		code, h, body := get(t, srv.URL+path)
		if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || !strings.Contains(body, `id="failures"`) {
			t.Fatalf("%s: %d %s", path, code, h.Get("Content-Type"))
		}
		if !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Fatalf("%s: CSP %q", path, h.Get("Content-Security-Policy"))
		}
	}
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	for _, path := range []string{"/", "/dashboard/app.js", "/dashboard/style.css"} {
		code, _, body := get(t, srv.URL+path)
		if code != 200 {
			t.Fatalf("%s: %d", path, code)
		}
		for _, m := range external.FindAllString(body, -1) {
			if m != "http://www.w3.org" { // the SVG namespace name, never fetched
				t.Errorf("%s refers to an external URL: %s", path, m)
			}
		}
		if strings.Contains(body, "innerHTML") || strings.Contains(body, "insertAdjacentHTML") {
			t.Errorf("%s builds HTML from strings", path)
		}
	}
	if code, _, _ := get(t, srv.URL+"/nope"); code != 404 {
		t.Fatalf("/nope: %d, want 404", code)
	}
}
