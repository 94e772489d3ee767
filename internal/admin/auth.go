package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// public reports the dashboard's static files, which hold no data: a
// browser cannot send a bearer token when it loads a page, so the page
// takes the token from its URL fragment and sends it on its API calls.
func public(r *http.Request) bool {
	p := r.URL.Path
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		(p == "/" || p == "/dashboard" || strings.HasPrefix(p, "/dashboard/"))
}

// crossOrigin reports a request a web page in an operator's browser made
// to the admin listener: it carries an Origin other than the listener's
// own (a cross-site POST that would put a route in maintenance). curl and
// scripts send no Origin.
func crossOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	return o != "" && o != "http://"+r.Host && o != "https://"+r.Host
}

// loopbackHost reports a Host that names the loopback interface. Without
// a token the admin listener is on loopback, and any other Host is a DNS
// rebinding attempt from a web page.
func loopbackHost(r *http.Request) bool {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// WithToken requires "Authorization: Bearer TOKEN" on every request to h
// when token() is not empty.
// The comparison takes the same time whatever the token sent (both sides
// are hashed to a fixed length first, then compared in constant time), so
// the token cannot be guessed byte by byte from response times. An empty
// token lets every request through: candor refuses an admin listener on a
// non-loopback address without one (configuration validation). token is
// read on every request, so that a reload that changes it takes effect
// without reopening the admin listener.
func WithToken(h http.Handler, token func() string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := token()
		if crossOrigin(r) || tok == "" && !loopbackHost(r) {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "cross-origin admin requests are refused"})
			return
		}
		if tok == "" || public(r) {
			h.ServeHTTP(w, r)
			return
		}
		want := sha256.Sum256([]byte(tok))
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="candor admin"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "admin token required"})
			return
		}
		h.ServeHTTP(w, r)
	})
}
