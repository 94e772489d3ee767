package upstream

import (
	"slices"
	"strings"
	"testing"

	"candor/internal/failure"
)

// TestRequestFieldsPolicy checks the client fields an upstream receives
// in cases net/http's canonical header does not cover: names in any case
// (a header built by another server), Connection options naming Host, the
// framing or candor's own fields, and Extra fields with an empty value.
func TestRequestFieldsPolicy(t *testing.T) {
	header := map[string][]string{
		"connection":          {"close, Content-Length, Host, Transfer-Encoding, X-Request-Id, x-gone"},
		"x-gone":              {"1"},
		"te":                  {"trailers"},
		"http2-settings":      {"AAMAAABkAARAAAAAAAIAAAAA"},
		"HTTP2-Settings":      {"AAMAAABkAARAAAAAAAIAAAAA"},
		"upgrade":             {"h2c"},
		"proxy-authorization": {"Basic eDp5"},
		"expect":              {"100-continue"},
		"x-forwarded-host":    {"evil.test"},
		"X-Kept":              {"yes"},
	}
	extra := []Field{{"X-Request-Id", "r-1"}, {"X-Forwarded-Host", ""}}
	req := &Request{Method: "POST", Target: "/", Host: "example.test", Header: header, Extra: extra,
		Body: strings.NewReader("hello"), ContentLength: 5}
	s := startServer(t, keepAlive)
	tr, tg := newTestTransport(t, testOptions(), s.url)
	if _, _, err := fetch(t.Context(), tr, tg, req); err != nil {
		t.Fatal(err)
	}
	got := string(s.received()[0])
	want := "POST / HTTP/1.1\r\nHost: example.test\r\nX-Kept: yes\r\nX-Request-Id: r-1\r\nContent-Length: 5\r\n\r\nhello"
	if got != want {
		t.Fatalf("upstream received\n%q\nwant\n%q", got, want)
	}
}

// TestClientBodyFailureKept: a body reader's own *failure.Error is the
// attempt's error, with its cause (not client_body_invalid for all), and
// the cut-off request's connection is not reused.
func TestClientBodyFailureKept(t *testing.T) {
	for _, k := range []failure.Kind{failure.RequestTimeout, failure.RequestBodyTooLarge, failure.ClientCanceled, failure.ClientBodyInvalid} {
		s := startServer(t, keepAlive)
		tr, tg := newTestTransport(t, testOptions(), s.url)
		body := &failingReader{data: "abc", err: failure.New(k, "")}
		for _, length := range []int64{-1, 10} {
			req := &Request{Method: "POST", Target: "/", Host: "h", Body: body, ContentLength: length, Attempt: 1}
			body.data = "abc"
			_, _, err := fetch(t.Context(), tr, tg, req)
			if got := failure.KindOf(err); got != k {
				t.Errorf("%s, length %d: kind %v (%v)", k, length, got, err)
			}
		}
		if n := tg.IdleConns(); n != 0 {
			t.Errorf("%s: %d idle connections after cut-off requests", k, n)
		}
		if got := s.received(); slices.ContainsFunc(got, func(b []byte) bool { return strings.HasSuffix(string(b), "0\r\n\r\n") }) {
			t.Errorf("%s: upstream received a complete chunked request: %q", k, got)
		}
	}
}

// failingReader returns data, then err.
type failingReader struct {
	data string
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.data == "" {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}
