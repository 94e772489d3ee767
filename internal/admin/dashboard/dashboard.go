// Package dashboard is the admin listener's web page: plain HTML, CSS and
// JavaScript embedded in the binary, with no build step and no external
// URL. The page polls the admin API's JSON endpoints (/status, /upstreams,
// /rates, /failures) and draws the upstreams' health, the request and
// failure rates by cause (SVG charts) and the recent failures, each of
// which expands into the cause table's explanation and fix.
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed assets
var assets embed.FS

// Page serves the dashboard's HTML (mounted at / and /dashboard).
func Page() http.Handler {
	page, err := assets.ReadFile("assets/index.html")
	if err != nil {
		panic(err) // embedded at build time
	}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", csp)
		w.Write(page)
	})
}

// Assets serves the page's script and style sheet; mount it at
// /dashboard/ (the prefix is stripped here).
func Assets() http.Handler {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err)
	}
	files := http.StripPrefix("/dashboard/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	})
}

// csp allows only the page's own script, style and API: no inline script
// and no other origin.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
