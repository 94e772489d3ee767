// Package admin serves candor's admin API on its own listener: liveness
// and the cause table. It only reads; it never changes the running
// configuration.
package admin

import (
	"encoding/json"
	"net/http"

	"candor/internal/failure"
)

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
//	GET /healthz  200 {"status":"ok"} while candor runs
//	GET /causes   the cause table as JSON
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /causes", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, Causes())
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
