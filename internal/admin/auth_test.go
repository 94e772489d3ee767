package admin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestWithToken(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) })
	srv := httptest.NewServer(WithToken(ok, func() string { return "s3cret-token-of-16+" }))
	defer srv.Close()
	cases := []struct {
		name, auth string
		want       int
	}{
		{"no header", "", 401},
		{"wrong token", "Bearer nope", 401},
		{"token as basic", "Basic s3cret-token-of-16+", 401},
		{"prefix of the token", "Bearer s3cret", 401},
		{"right token", "Bearer s3cret-token-of-16+", 204},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+"/status", nil)
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.want)
			}
			if c.want == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
	open := httptest.NewServer(WithToken(ok, func() string { return "" }))
	defer open.Close()
	if resp, err := http.Get(open.URL); err != nil || resp.StatusCode != 204 {
		t.Fatalf("no token configured: %v %v", resp, err)
	}
}

// TestCrossOriginRefused: a web page's cross-site POST and a DNS-rebinding
// Host are refused; curl-style requests pass.
func TestCrossOriginRefused(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) })
	srv := httptest.NewServer(WithToken(ok, func() string { return "" }))
	defer srv.Close()
	cases := []struct {
		name, origin, host string
		want               int
	}{
		{"curl", "", "", 204},
		{"same origin", "http://HOST", "", 204},
		{"cross-site page", "http://evil.example", "", 403},
		{"DNS rebinding", "", "evil.example:80", 403},
		{"localhost", "", "localhost:9901", 204},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", srv.URL+"/routes/api/maintenance", nil)
			if c.host != "" {
				req.Host = c.host
			}
			if c.origin != "" {
				req.Header.Set("Origin", strings.Replace(c.origin, "HOST", req.URL.Host, 1))
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.want)
			}
		})
	}
}
