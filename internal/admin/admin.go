// Package admin serves candor's admin API on its own listener: liveness,
// the cause table, the live state of routes and upstreams, reload,
// maintenance and drain, Prometheus metrics and Go's profiles. What it
// changes, it changes through Control, which the running gateway
// implements.
package admin

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"candor/internal/admin/dashboard"
	"candor/internal/failure"
	"candor/internal/telemetry"
)

// ErrNotFound is returned by Control for an unknown route, upstream or
// target.
var ErrNotFound = errors.New("not found")

// Control is what the admin API needs of the running gateway.
type Control interface {
	// Reload reads and applies the configuration file; an error leaves
	// the running configuration in force.
	Reload() error
	Status() Status
	Routes() []RouteState
	Upstreams() []UpstreamState
	SetMaintenance(route string, on bool) error
	SetDrain(upstream, target string, on bool) error
	// Failures returns the most recent gateway failures, most recent
	// first.
	Failures() []telemetry.Failure
	// Rates returns request and failure counts by cause over the last
	// minutes.
	Rates() telemetry.Rates
}

// Status is the configuration's life cycle as served by GET /status.
type Status struct {
	File          string    `json:"file"`
	Generation    int       `json:"generation"`
	LoadedAt      time.Time `json:"loaded_at"`
	ReloadsOK     int       `json:"reloads_ok"`
	ReloadsFailed int       `json:"reloads_failed"`
	LastError     string    `json:"last_error,omitempty"`
	LastErrorAt   time.Time `json:"last_error_at,omitzero"`
	Tunnels       int       `json:"tunnels"`
}

// RouteState is one route as served by GET /routes.
type RouteState struct {
	Name        string `json:"name"`
	Host        string `json:"host,omitempty"`
	PathPrefix  string `json:"path_prefix,omitempty"`
	Upstream    string `json:"upstream"`
	Maintenance bool   `json:"maintenance"`
	Strict      bool   `json:"strict"`
}

// UpstreamState is one upstream as served by GET /upstreams.
type UpstreamState struct {
	Name    string        `json:"name"`
	Policy  string        `json:"policy"`
	Usable  int           `json:"usable"`
	Targets []TargetState `json:"targets"`
}

// TargetState is one target of an upstream.
type TargetState struct {
	Target       string    `json:"target"`
	Weight       int       `json:"weight"`
	Healthy      bool      `json:"healthy"`
	Ejected      bool      `json:"ejected"`
	EjectedUntil time.Time `json:"ejected_until,omitzero"`
	Drained      bool      `json:"drained"`
	InFlight     int64     `json:"in_flight"`
	LastCause    string    `json:"last_cause,omitempty"`
	// RecentCauses counts the target's failures by cause id over the
	// last ten minutes.
	RecentCauses map[string]int64 `json:"recent_causes,omitempty"`
}

// Cause is one row of the cause table as served by GET /causes.
type Cause struct {
	ID          string `json:"id"`
	Status      int    `json:"status"`
	Phase       string `json:"phase"`
	Retry       string `json:"retry"`
	RetryAfter  int    `json:"retry_after,omitempty"`
	Title       string `json:"title"`
	Detail      string `json:"detail"`
	Explanation string `json:"explanation"`
	Fix         string `json:"fix"`
}

// Causes returns the cause table in table order.
func Causes() []Cause {
	ks := failure.Kinds()
	out := make([]Cause, len(ks))
	for i, k := range ks {
		r := k.Row()
		out[i] = Cause{
			ID: r.ID, Status: r.Status, Phase: r.Phase.String(), Retry: r.Retry.String(),
			RetryAfter: r.RetryAfter, Title: r.Title, Detail: r.Detail,
			Explanation: r.Explanation, Fix: r.Fix,
		}
	}
	return out
}

// Handler returns the admin API:
//
//	GET  /healthz                                  200 while candor runs
//	GET  /causes                                   the cause table
//	GET  /status                                   generation, last load, last rejected load
//	POST /reload                                   reload the configuration file (422 with the errors if rejected)
//	GET  /routes                                   routes and their maintenance state
//	POST /routes/{name}/maintenance?on=true|false  put a route in or out of maintenance
//	GET  /upstreams                                upstreams and their targets' health, ejection, drain, load
//	POST /upstreams/{name}/targets/{target}/drain?on=true|false   target: index or host:port
//	GET  /metrics                                  Prometheus metrics
//	GET  /readyz                                   200 once a configuration generation is loaded, else 503
//	GET  /failures                                 the most recent gateway failures, most recent first, with explanation and fix
//	GET  /rates                                    requests and failures by cause in 5 s buckets over 10 minutes
//	GET  / and /dashboard                          the dashboard (HTML; assets under /dashboard/)
//	GET  /debug/pprof/                             Go's profiles: index, profile?seconds=N (CPU), heap, allocs, goroutine, trace?seconds=N, ...
func Handler(ctl Control, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /causes", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, Causes())
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, ctl.Status())
	})
	mux.HandleFunc("POST /reload", func(w http.ResponseWriter, _ *http.Request) {
		if err := ctl.Reload(); err != nil {
			writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"reloaded": false, "error": err.Error(), "status": ctl.Status()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"reloaded": true, "status": ctl.Status()})
	})
	mux.HandleFunc("GET /routes", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, ctl.Routes())
	})
	mux.HandleFunc("POST /routes/{name}/maintenance", func(w http.ResponseWriter, r *http.Request) {
		on, ok := flag(w, r)
		if ok {
			reply(w, ctl.SetMaintenance(r.PathValue("name"), on), map[string]any{"route": r.PathValue("name"), "maintenance": on})
		}
	})
	mux.HandleFunc("GET /upstreams", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, ctl.Upstreams())
	})
	mux.HandleFunc("POST /upstreams/{name}/targets/{target}/drain", func(w http.ResponseWriter, r *http.Request) {
		on, ok := flag(w, r)
		if ok {
			reply(w, ctl.SetDrain(r.PathValue("name"), r.PathValue("target"), on), map[string]any{"upstream": r.PathValue("name"), "target": r.PathValue("target"), "drain": on})
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if st := ctl.Status(); st.Generation > 0 {
			writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "generation": st.Generation})
			return
		}
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": "no configuration loaded"})
	})
	mux.HandleFunc("GET /failures", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, ctl.Failures())
	})
	mux.HandleFunc("GET /rates", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, ctl.Rates())
	})
	profiles(mux)
	page := dashboard.Page()
	mux.Handle("GET /{$}", page)
	mux.Handle("GET /dashboard", page)
	mux.Handle("GET /dashboard/{$}", page)
	mux.Handle("GET /dashboard/", dashboard.Assets())
	return mux
}

// profiles serves Go's profiling endpoints on mux, behind the same token
// and Origin/Host checks as the rest of the admin API. Importing
// net/http/pprof also registers them on http.DefaultServeMux, which
// candor never serves. The admin listener has no write timeout, so a
// profile of any ?seconds= can be taken.
func profiles(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index) // index, and heap, allocs, goroutine, block, mutex, threadcreate by name
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}

// flag reads ?on=, which defaults to true.
func flag(w http.ResponseWriter, r *http.Request) (bool, bool) {
	v := r.URL.Query().Get("on")
	if v == "" {
		return true, true
	}
	on, err := strconv.ParseBool(v)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "on must be true or false"})
		return false, false
	}
	return on, true
}

func reply(w http.ResponseWriter, err error, ok any) {
	switch {
	case errors.Is(err, ErrNotFound):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
	default:
		writeJSON(w, http.StatusOK, ok)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
