package admin

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestProfiles: Go's profiles are served behind the admin token, and a
// CPU profile taken with it is a gzipped profile.
func TestProfiles(t *testing.T) {
	const token = "s3cret-token-of-16+"
	ctl := &fakeControl{}
	srv := httptest.NewServer(WithToken(Handler(ctl, prometheus.NewRegistry()), func() string { return token }))
	defer srv.Close()
	fetch := func(path, auth string, origin ...string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if len(origin) > 0 {
			req.Header.Set("Origin", origin[0])
		}
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res.StatusCode, b
	}
	gzipMagic := []byte{0x1f, 0x8b}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/profile?seconds=1", "/debug/pprof/heap", "/debug/pprof/goroutine", "/debug/pprof/cmdline"} {
		if code, _ := fetch(path, ""); code != http.StatusUnauthorized {
			t.Errorf("%s without the token: status %d, want 401", path, code)
		}
		if code, _ := fetch(path, "wrong-token"); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: status %d, want 401", path, code)
		}
	}
	if code, _ := fetch("/debug/pprof/heap", token, "http://evil.example"); code != http.StatusForbidden {
		t.Errorf("heap from a cross-site page: status %d, want 403", code)
	}
	if code, b := fetch("/debug/pprof/", token); code != http.StatusOK || !bytes.Contains(b, []byte("heap")) {
		t.Errorf("index: status %d, body %.200q", code, b)
	}
	for _, path := range []string{"/debug/pprof/profile?seconds=1", "/debug/pprof/heap", "/debug/pprof/allocs", "/debug/pprof/goroutine"} {
		code, b := fetch(path, token)
		if code != http.StatusOK || len(b) < 2 || !bytes.HasPrefix(b, gzipMagic) {
			t.Errorf("%s: status %d, %d bytes starting %x, want 200 and a gzipped profile", path, code, len(b), b[:min(len(b), 8)])
		}
	}
}
