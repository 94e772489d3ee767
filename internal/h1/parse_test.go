package h1

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"candor/internal/failure"
)

// testLimits are small limits, so that both sides of each are cheap to
// write.
var testLimits = limits{line: 64, header: 256, fields: 8}

// errIncomplete marks a head that did not end.
var errIncomplete = failure.New(failure.KindUnknown, "incomplete head")

// parseRaw parses raw as one request head within lim, feeding it step
// bytes at a time (0: all at once), as the connection does when the head
// arrives in pieces. It returns the request, the head's length, or the
// refusal.
func parseRaw(raw []byte, lim limits, step int) (*http.Request, int, *failure.Error) {
	st := newReqState()
	st.bind(&conn{})
	st.remote = "192.0.2.1:1234"
	p := &st.p
	p.reset(lim)
	b := append([]byte(nil), raw...)
	if step <= 0 {
		step = len(b)
	}
	for n := min(step, len(b)); ; n = min(n+step, len(b)) {
		done, fe := p.feed(b[:n])
		if fe != nil {
			return nil, 0, fe
		}
		if done {
			break
		}
		if n == len(b) {
			return nil, 0, errIncomplete
		}
	}
	r := new(http.Request)
	if fe := st.build(r, b[:p.off]); fe != nil {
		return nil, 0, fe
	}
	return r, p.off, nil
}

type parseCase struct {
	name string
	raw  string
	// kind is the refusal's cause id; "" for an accepted head.
	kind string
	// check looks at an accepted request.
	check func(t *testing.T, r *http.Request)
}

func h11(fields string) string { return "GET / HTTP/1.1\r\nHost: a\r\n" + fields + "\r\n" }

func want[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

// parseCases walk the request decision table: every rule, both sides of
// every limit (testLimits).
var parseCases = []parseCase{
	// Request line.
	{name: "simple", raw: h11(""), check: func(t *testing.T, r *http.Request) {
		want(t, "Method", r.Method, "GET")
		want(t, "RequestURI", r.RequestURI, "/")
		want(t, "Host", r.Host, "a")
		want(t, "Proto", r.Proto, "HTTP/1.1")
		want(t, "ContentLength", r.ContentLength, 0)
		want[io.ReadCloser](t, "Body", r.Body, http.NoBody)
		want(t, "Close", r.Close, false)
		want(t, "RemoteAddr", r.RemoteAddr, "192.0.2.1:1234")
		if _, ok := r.Header["Host"]; ok {
			t.Error("Host in Header")
		}
	}},
	{name: "method token", raw: "M-SEARCH! / HTTP/1.1\r\nHost: a\r\n\r\n", check: func(t *testing.T, r *http.Request) { want(t, "Method", r.Method, "M-SEARCH!") }},
	{name: "method not token", raw: "G@T / HTTP/1.1\r\nHost: a\r\n\r\n", kind: "request_malformed"},
	{name: "method with tab", raw: "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", kind: "request_malformed"},
	{name: "leading SP", raw: " GET / HTTP/1.1\r\nHost: a\r\n\r\n", kind: "request_malformed"},
	{name: "two SP before target", raw: "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", kind: "request_malformed"},
	{name: "two SP before version", raw: "GET /  HTTP/1.1\r\nHost: a\r\n\r\n", kind: "request_malformed"},
	{name: "trailing SP", raw: "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", kind: "request_malformed"},
	{name: "no version", raw: "GET /\r\nHost: a\r\n\r\n", kind: "request_malformed"},
	{name: "HTTP/1.0", raw: "GET / HTTP/1.0\r\n\r\n", check: func(t *testing.T, r *http.Request) {
		want(t, "Proto", r.Proto, "HTTP/1.0")
		want(t, "ProtoMinor", r.ProtoMinor, 0)
		want(t, "Host", r.Host, "")
		want(t, "Close", r.Close, true)
	}},
	{name: "HTTP/1.0 keep-alive", raw: "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", check: func(t *testing.T, r *http.Request) { want(t, "Close", r.Close, false) }},
	{name: "version 2.0", raw: "GET / HTTP/2.0\r\nHost: a\r\n\r\n", kind: "request_version_not_supported"},
	{name: "version 1.2", raw: "GET / HTTP/1.2\r\nHost: a\r\n\r\n", kind: "request_version_not_supported"},
	{name: "version 0.9", raw: "GET / HTTP/0.9\r\n\r\n", kind: "request_version_not_supported"},
	{name: "h2 preface", raw: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", kind: "request_version_not_supported"},
	{name: "version lower case", raw: "GET / http/1.1\r\nHost: a\r\n\r\n", kind: "request_malformed"},
	{name: "version 1.10", raw: "GET / HTTP/1.10\r\nHost: a\r\n\r\n", kind: "request_malformed"},
	{name: "version 1", raw: "GET / HTTP/1\r\nHost: a\r\n\r\n", kind: "request_malformed"},
	{name: "version letters", raw: "GET / HTTP/a.b\r\nHost: a\r\n\r\n", kind: "request_malformed"},
	{name: "line at limit", raw: "GET /" + strings.Repeat("a", 64-len("GET / HTTP/1.1")) + " HTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "line over limit", raw: "GET /" + strings.Repeat("a", 65-len("GET / HTTP/1.1")) + " HTTP/1.1\r\nHost: a\r\n\r\n", kind: "request_line_too_long"},
	{name: "line never ends", raw: "GET /" + strings.Repeat("a", 200), kind: "request_line_too_long"},
	{name: "bare LF request line", raw: "GET / HTTP/1.1\nHost: a\r\n\r\n", kind: "request_malformed"},
	{name: "bare LF field", raw: "GET / HTTP/1.1\r\nHost: a\n\r\n", kind: "request_malformed"},
	{name: "bare LF end", raw: "GET / HTTP/1.1\r\nHost: a\r\n\n", kind: "request_malformed"},
	{name: "bare CR request line", raw: "GET / HTTP/1.1\rX\r\nHost: a\r\n\r\n", kind: "request_malformed"},
	{name: "bare CR field", raw: h11("X: a\rb\r\n"), kind: "request_malformed"},
	{name: "CR CR LF end", raw: "GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", kind: "request_malformed"},
	{name: "8 empty lines", raw: strings.Repeat("\r\n", 8) + h11("")},
	{name: "9 empty lines", raw: strings.Repeat("\r\n", 9) + h11(""), kind: "request_malformed"},
	{name: "leading bare LF", raw: "\n" + h11(""), kind: "request_malformed"},

	// Targets.
	{name: "origin query", raw: "GET /p/q?x=1&y=%20 HTTP/1.1\r\nHost: a\r\n\r\n", check: func(t *testing.T, r *http.Request) {
		want(t, "Path", r.URL.Path, "/p/q")
		want(t, "RawQuery", r.URL.RawQuery, "x=1&y=%20")
		want(t, "RequestURI", r.RequestURI, "/p/q?x=1&y=%20")
	}},
	{name: "origin escaped", raw: "GET /a%20b%2Fc HTTP/1.1\r\nHost: a\r\n\r\n", check: func(t *testing.T, r *http.Request) {
		want(t, "Path", r.URL.Path, "/a b/c")
		want(t, "RawPath", r.URL.RawPath, "/a%20b%2Fc")
	}},
	{name: "origin bad escape", raw: "GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n", kind: "request_malformed"},
	{name: "origin force query", raw: "GET /a? HTTP/1.1\r\nHost: a\r\n\r\n", check: func(t *testing.T, r *http.Request) { want(t, "ForceQuery", r.URL.ForceQuery, true) }},
	{name: "origin double slash", raw: "GET //x/y HTTP/1.1\r\nHost: a\r\n\r\n", check: func(t *testing.T, r *http.Request) {
		want(t, "Path", r.URL.Path, "//x/y")
		want(t, "URL.Host", r.URL.Host, "")
	}},
	{name: "target DEL", raw: "GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", kind: "request_malformed"},
	{name: "target obs-text", raw: "GET /a\x80 HTTP/1.1\r\nHost: a\r\n\r\n", kind: "request_malformed"},
	{name: "target NUL", raw: "GET /a\x00 HTTP/1.1\r\nHost: a\r\n\r\n", kind: "request_malformed"},
	{name: "target tab", raw: "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", kind: "request_malformed"},
	{name: "asterisk OPTIONS", raw: "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", check: func(t *testing.T, r *http.Request) { want(t, "Path", r.URL.Path, "*") }},
	{name: "asterisk GET", raw: "GET * HTTP/1.1\r\nHost: a\r\n\r\n", kind: "request_malformed"},
	{name: "absolute", raw: "GET http://b.example:8080/p?q HTTP/1.1\r\nHost: a\r\n\r\n", check: func(t *testing.T, r *http.Request) {
		want(t, "Host", r.Host, "b.example:8080")
		want(t, "Scheme", r.URL.Scheme, "http")
		want(t, "Path", r.URL.Path, "/p")
		want(t, "RawQuery", r.URL.RawQuery, "q")
		want(t, "RequestURI", r.RequestURI, "http://b.example:8080/p?q")
	}},
	{name: "absolute https upper", raw: "GET HTTPS://b/ HTTP/1.1\r\nHost: a\r\n\r\n", check: func(t *testing.T, r *http.Request) {
		want(t, "Host", r.Host, "b")
		want(t, "Scheme", r.URL.Scheme, "https")
	}},
	{name: "absolute without Host", raw: "GET http://b/ HTTP/1.1\r\n\r\n", kind: "request_host_invalid"},
	{name: "absolute invalid Host", raw: "GET http://b/ HTTP/1.1\r\nHost: a b\r\n\r\n", kind: "request_host_invalid"},
	{name: "absolute HTTP/1.0 without Host", raw: "GET http://b/ HTTP/1.0\r\n\r\n", check: func(t *testing.T, r *http.Request) { want(t, "Host", r.Host, "b") }},
	{name: "absolute userinfo", raw: "GET http://u@b/ HTTP/1.1\r\nHost: b\r\n\r\n", kind: "request_host_invalid"},
	{name: "absolute empty authority", raw: "GET http:///p HTTP/1.1\r\nHost: b\r\n\r\n", kind: "request_host_invalid"},
	{name: "absolute port only", raw: "GET http://:80/p HTTP/1.1\r\nHost: b\r\n\r\n", kind: "request_host_invalid"},
	{name: "absolute other scheme", raw: "GET ftp://b/ HTTP/1.1\r\nHost: b\r\n\r\n", kind: "request_malformed"},
	{name: "relative target", raw: "GET a/b HTTP/1.1\r\nHost: b\r\n\r\n", kind: "request_malformed"},
	{name: "authority-form GET", raw: "GET b:443 HTTP/1.1\r\nHost: b\r\n\r\n", kind: "request_malformed"},
	{name: "CONNECT", raw: "CONNECT b:443 HTTP/1.1\r\nHost: b:443\r\n\r\n", kind: "request_method_not_supported"},
	{name: "CONNECT origin-form", raw: "CONNECT / HTTP/1.1\r\nHost: b\r\n\r\n", kind: "request_method_not_supported"},

	// Field lines.
	{name: "canonical names", raw: h11("x-foo-BAR: 1\r\ncontent-TYPE: t\r\nwww-authenticate: w\r\n"), check: func(t *testing.T, r *http.Request) {
		want(t, "X-Foo-Bar", r.Header.Get("X-Foo-Bar"), "1")
		want(t, "Content-Type", r.Header["Content-Type"][0], "t")
		want(t, "Www-Authenticate", r.Header["Www-Authenticate"][0], "w")
	}},
	{name: "repeated fields", raw: h11("A: 1\r\nB: x\r\na: 2\r\n"), check: func(t *testing.T, r *http.Request) {
		want(t, "A", strings.Join(r.Header["A"], ","), "1,2")
		want(t, "B", strings.Join(r.Header["B"], ","), "x")
	}},
	{name: "OWS trimmed", raw: h11("A: \t x y \t \r\nB:\r\nC:z\r\n"), check: func(t *testing.T, r *http.Request) {
		want(t, "A", r.Header["A"][0], "x y")
		want(t, "B", r.Header["B"][0], "")
		want(t, "C", r.Header["C"][0], "z")
	}},
	{name: "obs-text and HTAB", raw: h11("A: caf\xe9\tx\r\n"), check: func(t *testing.T, r *http.Request) { want(t, "A", r.Header["A"][0], "caf\xe9\tx") }},
	{name: "name not token", raw: h11("F@o: x\r\n"), kind: "request_malformed"},
	{name: "SP before colon", raw: h11("Foo : x\r\n"), kind: "request_malformed"},
	{name: "HTAB before colon", raw: h11("Foo\t: x\r\n"), kind: "request_malformed"},
	{name: "no colon", raw: h11("Foo x\r\n"), kind: "request_malformed"},
	{name: "empty name", raw: h11(": x\r\n"), kind: "request_malformed"},
	{name: "obs-fold", raw: h11("Foo: a\r\n b\r\n"), kind: "request_malformed"},
	{name: "SP first field", raw: "GET / HTTP/1.1\r\n Host: a\r\n\r\n", kind: "request_malformed"},
	{name: "HTAB first field", raw: "GET / HTTP/1.1\r\n\tHost: a\r\n\r\n", kind: "request_malformed"},
	{name: "NUL in value", raw: h11("A: x\x00y\r\n"), kind: "request_malformed"},
	{name: "CTL in value", raw: h11("A: x\x01y\r\n"), kind: "request_malformed"},
	{name: "DEL in value", raw: h11("A: x\x7fy\r\n"), kind: "request_malformed"},
	{name: "fields at limit", raw: "GET / HTTP/1.1\r\n" + strings.Repeat("A: 1\r\n", 7) + "Host: a\r\n\r\n"},
	{name: "fields over limit", raw: "GET / HTTP/1.1\r\n" + strings.Repeat("A: 1\r\n", 8) + "Host: a\r\n\r\n", kind: "request_header_too_large"},
	// Host: a\r\n is 9 bytes; a field line of 247 bytes fills 256.
	{name: "header at limit", raw: "GET / HTTP/1.1\r\nHost: a\r\nA: " + strings.Repeat("x", 247-5) + "\r\n\r\n"},
	{name: "header over limit", raw: "GET / HTTP/1.1\r\nHost: a\r\nA: " + strings.Repeat("x", 248-5) + "\r\n\r\n", kind: "request_header_too_large"},
	{name: "header never ends", raw: "GET / HTTP/1.1\r\nHost: a\r\nA: " + strings.Repeat("x", 300), kind: "request_header_too_large"},
	{name: "Expect 100-continue", raw: h11("Expect: 100-Continue\r\nContent-Length: 1\r\n"), check: func(t *testing.T, r *http.Request) {
		if _, ok := r.Header["Expect"]; ok {
			t.Error("Expect in Header")
		}
	}},
	{name: "Expect other", raw: h11("Expect: something\r\n"), check: func(t *testing.T, r *http.Request) {
		if _, ok := r.Header["Expect"]; ok {
			t.Error("Expect in Header")
		}
	}},
	{name: "Connection close", raw: h11("Connection: keep-alive, Close\r\n"), check: func(t *testing.T, r *http.Request) {
		want(t, "Close", r.Close, true)
		want(t, "Connection", r.Header["Connection"][0], "keep-alive, Close")
	}},

	// Host.
	{name: "no Host", raw: "GET / HTTP/1.1\r\n\r\n", kind: "request_host_invalid"},
	{name: "two Host", raw: "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", kind: "request_host_invalid"},
	{name: "Host userinfo", raw: "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", kind: "request_host_invalid"},
	{name: "Host space", raw: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", kind: "request_host_invalid"},
	{name: "Host comma", raw: "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", kind: "request_host_invalid"},
	{name: "Host bad port", raw: "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", kind: "request_host_invalid"},
	{name: "Host two ports", raw: "GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n", kind: "request_host_invalid"},
	{name: "Host slash", raw: "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", kind: "request_host_invalid"},
	{name: "Host bad escape", raw: "GET / HTTP/1.1\r\nHost: a%4\r\n\r\n", kind: "request_host_invalid"},
	{name: "Host IPv6", raw: "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", check: func(t *testing.T, r *http.Request) { want(t, "Host", r.Host, "[::1]:8080") }},
	{name: "Host IPv6 unclosed", raw: "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", kind: "request_host_invalid"},
	{name: "Host IPv6 zone", raw: "GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n", kind: "request_host_invalid"},
	{name: "Host IPv4 literal", raw: "GET / HTTP/1.1\r\nHost: [127.0.0.1]\r\n\r\n", kind: "request_host_invalid"},
	{name: "Host IPv4", raw: "GET / HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n"},
	{name: "Host escaped reg-name", raw: "GET / HTTP/1.1\r\nHost: %41b.example\r\n\r\n"},
	{name: "Host empty", raw: "GET / HTTP/1.1\r\nHost:\r\n\r\n", check: func(t *testing.T, r *http.Request) { want(t, "Host", r.Host, "") }},
	{name: "Host empty port", raw: "GET / HTTP/1.1\r\nHost: a:\r\n\r\n"},
	{name: "HTTP/1.0 bad Host", raw: "GET / HTTP/1.0\r\nHost: a b\r\n\r\n", kind: "request_host_invalid"},

	// Framing.
	{name: "Content-Length", raw: h11("Content-Length: 5\r\n"), check: func(t *testing.T, r *http.Request) {
		want(t, "ContentLength", r.ContentLength, 5)
		want(t, "Content-Length field", r.Header.Get("Content-Length"), "5")
		if r.Body == http.NoBody {
			t.Error("no body")
		}
	}},
	{name: "Content-Length 0", raw: h11("Content-Length: 0\r\n"), check: func(t *testing.T, r *http.Request) { want[io.ReadCloser](t, "Body", r.Body, http.NoBody) }},
	{name: "Content-Length list", raw: h11("Content-Length: 5, 5\r\n"), check: func(t *testing.T, r *http.Request) {
		want(t, "ContentLength", r.ContentLength, 5)
		want(t, "Content-Length field", strings.Join(r.Header["Content-Length"], ","), "5")
	}},
	{name: "Content-Length repeated", raw: h11("Content-Length: 5\r\nContent-Length: 5\r\n"), check: func(t *testing.T, r *http.Request) {
		want(t, "Content-Length field", strings.Join(r.Header["Content-Length"], ","), "5")
	}},
	{name: "Content-Length 18 digits", raw: h11("Content-Length: 999999999999999999\r\n")},
	{name: "Content-Length 19 digits", raw: h11("Content-Length: 1000000000000000000\r\n"), kind: "request_framing_invalid"},
	{name: "Content-Length leading zeros 19", raw: h11("Content-Length: 0000000000000000005\r\n"), kind: "request_framing_invalid"},
	{name: "Content-Length differing list", raw: h11("Content-Length: 5, 6\r\n"), kind: "request_framing_invalid"},
	{name: "Content-Length differing lines", raw: h11("Content-Length: 5\r\nContent-Length: 6\r\n"), kind: "request_framing_invalid"},
	{name: "Content-Length sign", raw: h11("Content-Length: +5\r\n"), kind: "request_framing_invalid"},
	{name: "Content-Length negative", raw: h11("Content-Length: -1\r\n"), kind: "request_framing_invalid"},
	{name: "Content-Length hex", raw: h11("Content-Length: 0x5\r\n"), kind: "request_framing_invalid"},
	{name: "Content-Length inner space", raw: h11("Content-Length: 1 2\r\n"), kind: "request_framing_invalid"},
	{name: "Content-Length empty", raw: h11("Content-Length:\r\n"), kind: "request_framing_invalid"},
	{name: "Content-Length empty element", raw: h11("Content-Length: 5,\r\n"), kind: "request_framing_invalid"},
	{name: "chunked", raw: h11("Transfer-Encoding: chunked\r\n"), check: func(t *testing.T, r *http.Request) {
		want(t, "ContentLength", r.ContentLength, -1)
		want(t, "TransferEncoding", strings.Join(r.TransferEncoding, ","), "chunked")
		if _, ok := r.Header["Transfer-Encoding"]; ok {
			t.Error("Transfer-Encoding in Header")
		}
	}},
	{name: "chunked OWS", raw: h11("Transfer-Encoding: \t chunked \t\r\n")},
	{name: "TE and CL", raw: h11("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), kind: "request_framing_invalid"},
	{name: "CL and TE", raw: h11("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), kind: "request_framing_invalid"},
	{name: "TE on HTTP/1.0", raw: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", kind: "request_framing_invalid"},
	{name: "TE twice", raw: h11("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), kind: "request_framing_invalid"},
	{name: "TE gzip chunked", raw: h11("Transfer-Encoding: gzip, chunked\r\n"), kind: "request_transfer_coding_unsupported"},
	{name: "TE gzip deflate chunked", raw: h11("Transfer-Encoding: gzip,deflate ,chunked\r\n"), kind: "request_transfer_coding_unsupported"},
	{name: "TE chunked gzip", raw: h11("Transfer-Encoding: chunked, gzip\r\n"), kind: "request_framing_invalid"},
	{name: "TE chunked chunked", raw: h11("Transfer-Encoding: chunked, chunked\r\n"), kind: "request_framing_invalid"},
	{name: "TE gzip", raw: h11("Transfer-Encoding: gzip\r\n"), kind: "request_framing_invalid"},
	{name: "TE xchunked", raw: h11("Transfer-Encoding: xchunked\r\n"), kind: "request_framing_invalid"},
	{name: "TE identity", raw: h11("Transfer-Encoding: identity\r\n"), kind: "request_framing_invalid"},
	{name: "TE upper", raw: h11("Transfer-Encoding: CHUNKED\r\n"), kind: "request_framing_invalid"},
	{name: "TE inner tab", raw: h11("Transfer-Encoding: chun\tked\r\n"), kind: "request_framing_invalid"},
	{name: "TE empty element", raw: h11("Transfer-Encoding: gzip,,chunked\r\n"), kind: "request_framing_invalid"},
	{name: "TE leading comma", raw: h11("Transfer-Encoding: ,chunked\r\n"), kind: "request_framing_invalid"},
	{name: "TE quoted", raw: h11("Transfer-Encoding: \"chunked\"\r\n"), kind: "request_framing_invalid"},
	{name: "TE parameter", raw: h11("Transfer-Encoding: gzip;q=1, chunked\r\n"), kind: "request_framing_invalid"},
	{name: "TE empty", raw: h11("Transfer-Encoding:\r\n"), kind: "request_framing_invalid"},
}

func TestParse(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			for _, step := range []int{0, 1, 7} {
				r, n, fe := parseRaw([]byte(tc.raw), testLimits, step)
				if tc.kind == "" {
					if fe != nil {
						t.Fatalf("step %d: refused: %v", step, fe)
					}
					if n != len(tc.raw) {
						t.Fatalf("step %d: head length %d, want %d", step, n, len(tc.raw))
					}
					if tc.check != nil && step == 0 {
						tc.check(t, r)
					}
					continue
				}
				if fe == nil {
					t.Fatalf("step %d: accepted, want %s", step, tc.kind)
				}
				if fe.Kind.String() != tc.kind {
					t.Fatalf("step %d: %s (%s), want %s", step, fe.Kind, fe.Detail, tc.kind)
				}
			}
		})
	}
}

// TestParseHeadEnd: the parser stops at the end of the head, whatever
// follows (a body, a pipelined request).
func TestParseHeadEnd(t *testing.T) {
	head := h11("Content-Length: 3\r\n")
	_, n, fe := parseRaw([]byte(head+"abcGET / HTTP/1.1\r\n"), testLimits, 0)
	if fe != nil || n != len(head) {
		t.Fatalf("n %d, %v; want %d", n, fe, len(head))
	}
	if _, _, fe := parseRaw([]byte(head[:len(head)-1]), testLimits, 0); !errors.Is(fe, failure.KindUnknown) {
		t.Fatalf("incomplete head: %v", fe)
	}
}

func TestClassifyTE(t *testing.T) {
	for v, c := range map[string]teClass{
		"chunked": teChunked, "gzip, chunked": teUnsupported, "a,b,chunked": teUnsupported,
		"chunked,": teInvalid, "gzip": teInvalid, ", chunked": teInvalid, "chunked , chunked": teInvalid,
	} {
		if got := classifyTE([]byte(v)); got != c {
			t.Errorf("classifyTE(%q) = %d, want %d", v, got, c)
		}
	}
}

func TestParseChunkSize(t *testing.T) {
	for line, want := range map[string]int64{
		"0": 0, "a": 10, "FFFF": 65535, "1;ext": 1, "1 ; a=b": 1, "1;a=\"q\"": 1, "7fffffffffffffff": 1<<63 - 1,
		"": -1, "g": -1, "-1": -1, "+1": -1, "0x1": -1, "1 x": -1, "8000000000000000": -1,
		"00000000000000001": -1, "1;a\x00": -1, "1\x01": -1,
	} {
		n, err := parseChunkSize([]byte(line))
		if want < 0 {
			if err == nil {
				t.Errorf("parseChunkSize(%q) = %d, want an error", line, n)
			}
			continue
		}
		if err != nil || n != want {
			t.Errorf("parseChunkSize(%q) = %d, %v; want %d", line, n, err, want)
		}
	}
}
