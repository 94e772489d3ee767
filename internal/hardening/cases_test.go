package hardening_test

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// Helpers that build battery rows.

const host = "Host: h.test"

// head joins a request line and field lines into a request head.
func head(lines ...string) string { return strings.Join(lines, "\r\n") + "\r\n\r\n" }

func ok() want                              { return want{status: 200} }
func okHead() want                          { return want{status: 200, method: "HEAD"} }
func refused(status int, cause string) want { return want{status: status, cause: cause} }

// Refusals of the decision table.
var (
	malformed   = refused(400, "request_malformed")
	hostInvalid = refused(400, "request_host_invalid")
	framing     = refused(400, "request_framing_invalid")
	coding      = refused(501, "request_transfer_coding_unsupported")
	bodyInvalid = refused(400, "client_body_invalid")
	lineTooLong = refused(414, "request_line_too_long")
	headerLarge = refused(431, "request_header_too_large")
	bodyLarge   = refused(413, "request_body_too_large")
	timeout     = refused(408, "request_timeout")
	version     = refused(505, "request_version_not_supported")
	method      = refused(501, "request_method_not_supported")
)

// up builds an expected upstream request.
func up(method, target, body string, fields ...string) upReq {
	return upReq{method: method, target: target, fields: fields, body: body}
}

// accepted is a single request that reaches the upstream as up and is
// answered 200 on a connection that stays open.
func accepted(name, raw string, u upReq) tcase {
	return tcase{name: name, send: []string{raw}, want: []want{ok()}, up: []upReq{u}}
}

// rejected is a single request refused with w: the connection closes and
// the upstream sees nothing.
func rejected(name, raw string, w want) tcase {
	return tcase{name: name, send: []string{raw}, want: []want{w}, closed: true}
}

// badChunked is a POST with a chunked body whose encoding breaks: 400
// client_body_invalid, closed, and the upstream never receives a complete
// request (it may have received the beginning of one).
func badChunked(name, body string) tcase {
	raw := head("POST /chunked HTTP/1.1", host, "Transfer-Encoding: chunked") + body
	return tcase{name: name, send: []string{raw}, want: []want{bodyInvalid}, closed: true, partialOK: true}
}

// post is a POST of body with Content-Length.
func post(target string, body string, fields ...string) string {
	lines := append([]string{"POST " + target + " HTTP/1.1", host}, fields...)
	lines = append(lines, "Content-Length: "+strconv.Itoa(len(body)))
	return head(lines...) + body
}

// chunkedPost is a POST with Transfer-Encoding te and the raw body.
func chunkedPost(target, te, body string, fields ...string) string {
	lines := append([]string{"POST " + target + " HTTP/1.1", host}, fields...)
	lines = append(lines, "Transfer-Encoding: "+te)
	return head(lines...) + body
}

// manyPipelined is n requests in one write, alternating GET and POST with
// a body: n answers in order, each request reaching the upstream as sent.
func manyPipelined(n int) tcase {
	tc := tcase{name: "pipelined/" + strconv.Itoa(n) + "-in-one-write", send: []string{""}}
	for i := range n {
		target := "/" + strconv.Itoa(i)
		if i%2 == 0 {
			tc.send[0] += head("GET "+target+" HTTP/1.1", host)
			tc.up = append(tc.up, up("GET", target, "", host))
		} else {
			body := strings.Repeat(strconv.Itoa(i), i)
			tc.send[0] += post(target, body)
			tc.up = append(tc.up, up("POST", target, body, host))
		}
		tc.want = append(tc.want, ok())
	}
	return tc
}

// battery returns the cases, grouped by the decision table's sections.
func battery() []tcase {
	var cs []tcase
	add := func(c ...tcase) { cs = append(cs, c...) }

	// Valid requests: the baseline, and the edges the table allows.
	add(
		accepted("valid/get", head("GET /a?b=c HTTP/1.1", host, "X-A: 1", "x-lower: v"),
			up("GET", "/a?b=c", "", host, "X-A: 1", "x-lower: v")),
		tcase{name: "valid/head", send: []string{head("HEAD /h HTTP/1.1", host)}, want: []want{okHead()},
			up: []upReq{up("HEAD", "/h", "", host)}},
		accepted("valid/post-content-length", post("/p", "hello"), up("POST", "/p", "hello", host)),
		accepted("valid/post-chunked", chunkedPost("/p", "chunked", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
			up("POST", "/p", "hello world", host)),
		accepted("valid/chunked-extensions", chunkedPost("/p", "chunked", "5;ext=1\r\nhello\r\n0;last;q=\"x\"\r\n\r\n"),
			up("POST", "/p", "hello", host)),
		accepted("valid/chunked-trailer-dropped", chunkedPost("/p", "chunked", "5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n"),
			up("POST", "/p", "hello", host)),
		accepted("valid/chunked-upper-case-hex", chunkedPost("/p", "chunked", "A\r\n0123456789\r\n0\r\n\r\n"),
			up("POST", "/p", "0123456789", host)),
		accepted("valid/chunked-ows-around", chunkedPost("/p", " \tchunked\t ", "5\r\nhello\r\n0\r\n\r\n"),
			up("POST", "/p", "hello", host)),
		accepted("valid/content-length-leading-zeros", head("POST /p HTTP/1.1", host, "Content-Length: 005")+"hello",
			up("POST", "/p", "hello", host)),
		accepted("valid/content-length-repeated-identical", head("POST /p HTTP/1.1", host, "Content-Length: 5", "Content-Length: 5")+"hello",
			up("POST", "/p", "hello", host)),
		accepted("valid/content-length-list-identical", head("POST /p HTTP/1.1", host, "Content-Length: 5, 5")+"hello",
			up("POST", "/p", "hello", host)),
		accepted("valid/content-length-zero", head("GET /z HTTP/1.1", host, "Content-Length: 0"), up("GET", "/z", "", host)),
		tcase{name: "valid/http10-without-host", send: []string{"GET /old HTTP/1.0\r\n\r\n"}, want: []want{ok()}, closed: true,
			up: []upReq{up("GET", "/old", "", "Host: ")}},
		tcase{name: "valid/http10-with-host", send: []string{head("GET /old HTTP/1.0", host)}, want: []want{ok()}, closed: true,
			up: []upReq{up("GET", "/old", "", host)}},
		accepted("valid/eight-leading-empty-lines", strings.Repeat("\r\n", 8)+head("GET /e HTTP/1.1", host), up("GET", "/e", "", host)),
		accepted("valid/absolute-form", head("GET http://abs.test/p?q=1 HTTP/1.1", host), up("GET", "/p?q=1", "", "Host: abs.test")),
		accepted("valid/absolute-form-port", head("GET http://abs.test:8080/p HTTP/1.1", host), up("GET", "/p", "", "Host: abs.test:8080")),
		accepted("valid/options-asterisk", head("OPTIONS * HTTP/1.1", host), up("OPTIONS", "*", "", host)),
		accepted("valid/obs-text-value", head("GET / HTTP/1.1", host, "X-Latin: caf\xe9"), up("GET", "/", "", host, "X-Latin: caf\xe9")),
		accepted("valid/ows-trimmed", head("GET / HTTP/1.1", host, "X-A: \t v w \t"), up("GET", "/", "", host, "X-A: v w")),
		accepted("valid/htab-inside-value", head("GET / HTTP/1.1", host, "X-A: a\tb"), up("GET", "/", "", host, "X-A: a\tb")),
		accepted("valid/empty-value", head("GET / HTTP/1.1", host, "X-Empty:"), up("GET", "/", "", host, "X-Empty: ")),
		accepted("valid/repeated-field-order-kept", head("GET / HTTP/1.1", host, "X-L: 1", "X-M: m", "X-L: 2"),
			up("GET", "/", "", host, "X-M: m", "X-L: 1", "X-L: 2")),
		accepted("valid/host-ipv6", head("GET / HTTP/1.1", "Host: [::1]:8080"), up("GET", "/", "", "Host: [::1]:8080")),
		accepted("valid/host-ipv4-port", head("GET / HTTP/1.1", "Host: 192.0.2.1:80"), up("GET", "/", "", "Host: 192.0.2.1:80")),
		accepted("valid/body-that-looks-like-a-request", post("/p", head("GET /smuggled HTTP/1.1", host)),
			up("POST", "/p", head("GET /smuggled HTTP/1.1", host), host)),
		tcase{name: "valid/expect-100-continue", expect100: true,
			send: []string{head("POST /e HTTP/1.1", host, "Expect: 100-continue", "Content-Length: 5"), "hello"},
			want: []want{ok()}, up: []upReq{up("POST", "/e", "hello", host)}},
		tcase{name: "valid/expect-100-continue-chunked", expect100: true,
			send: []string{head("POST /e HTTP/1.1", host, "Expect: 100-continue", "Transfer-Encoding: chunked"), "5\r\nhello\r\n0\r\n\r\n"},
			want: []want{ok()}, up: []upReq{up("POST", "/e", "hello", host)}},
		accepted("valid/field-names-any-case", head("POST /p HTTP/1.1", "host: h.test", "transfer-encoding: chunked")+"5\r\nhello\r\n0\r\n\r\n",
			up("POST", "/p", "hello", host)),
		accepted("valid/chunked-zeros-last-chunk", chunkedPost("/p", "chunked", "5\r\nhello\r\n000\r\n\r\n"), up("POST", "/p", "hello", host)),
		accepted("valid/chunked-empty-body", head("GET /g HTTP/1.1", host, "Transfer-Encoding: chunked")+"0\r\n\r\n", up("GET", "/g", "", host)),
		accepted("valid/absolute-form-https", head("GET https://abs.test/s HTTP/1.1", host), up("GET", "/s", "", "Host: abs.test")),
		accepted("valid/expect-other-ignored", head("GET / HTTP/1.1", host, "Expect: something"), up("GET", "/", "", host)),
	)

	// Pipelining: answered in order, each request reaching the upstream
	// unchanged; nothing after a refusal is processed.
	add(
		tcase{name: "pipelined/two", send: []string{head("GET /1 HTTP/1.1", host) + head("GET /2 HTTP/1.1", host, "X-N: 2")},
			want: []want{ok(), ok()}, up: []upReq{up("GET", "/1", "", host), up("GET", "/2", "", host, "X-N: 2")}},
		tcase{name: "pipelined/three-with-bodies",
			send: []string{head("GET /1 HTTP/1.1", host) + post("/2", "hello") + chunkedPost("/3", "chunked", "3\r\nabc\r\n0\r\n\r\n")},
			want: []want{ok(), ok(), ok()},
			up:   []upReq{up("GET", "/1", "", host), up("POST", "/2", "hello", host), up("POST", "/3", "abc", host)}},
		manyPipelined(20),
		tcase{name: "pipelined/empty-lines-between", send: []string{head("GET /1 HTTP/1.1", host) + "\r\n\r\n" + head("GET /2 HTTP/1.1", host)},
			want: []want{ok(), ok()}, up: []upReq{up("GET", "/1", "", host), up("GET", "/2", "", host)}},
		tcase{name: "pipelined/head-then-get", send: []string{head("HEAD /1 HTTP/1.1", host) + head("GET /2 HTTP/1.1", host)},
			want: []want{okHead(), ok()}, up: []upReq{up("HEAD", "/1", "", host), up("GET", "/2", "", host)}},
		tcase{name: "pipelined/refusal-stops-the-connection",
			send: []string{head("GET /1 HTTP/1.1", host) + head("GET /2 HTTP/1.1", host, "Host: other.test") + head("GET /3 HTTP/1.1", host)},
			want: []want{ok(), hostInvalid}, closed: true, up: []upReq{up("GET", "/1", "", host)}},
		tcase{name: "pipelined/connection-close-stops-the-connection",
			send: []string{head("GET /1 HTTP/1.1", host, "Connection: close") + head("GET /2 HTTP/1.1", host)},
			want: []want{ok()}, closed: true, up: []upReq{up("GET", "/1", "", host)}},
		rejected("pipelined/smuggle-te-cl",
			head("POST / HTTP/1.1", host, "Transfer-Encoding: chunked", "Content-Length: 4")+"0\r\n\r\n"+head("GET /smuggled HTTP/1.1", host),
			framing),
		rejected("pipelined/smuggle-cl-te",
			head("POST / HTTP/1.1", host, "Content-Length: 6", "Transfer-Encoding: chunked")+"0\r\n\r\nG"+head("GET /smuggled HTTP/1.1", host),
			framing),
	)

	// The request line.
	add(
		rejected("line/method-not-token", head("G(T / HTTP/1.1", host), malformed),
		rejected("line/nul-in-method", head("G\x00T / HTTP/1.1", host), malformed),
		rejected("line/method-empty", head(" / HTTP/1.1", host), malformed),
		rejected("line/double-space", head("GET  / HTTP/1.1", host), malformed),
		rejected("line/tab-separator", head("GET\t/ HTTP/1.1", host), malformed),
		rejected("line/trailing-space", head("GET / HTTP/1.1 ", host), malformed),
		rejected("line/space-in-target", head("GET /a b HTTP/1.1", host), malformed),
		rejected("line/ctl-in-target", head("GET /a\x01b HTTP/1.1", host), malformed),
		rejected("line/del-in-target", head("GET /a\x7fb HTTP/1.1", host), malformed),
		rejected("line/non-ascii-target", head("GET /caf\xc3\xa9 HTTP/1.1", host), malformed),
		rejected("line/relative-target", head("GET a/b HTTP/1.1", host), malformed),
		rejected("line/asterisk-with-get", head("GET * HTTP/1.1", host), malformed),
		rejected("line/authority-form-with-get", head("GET h.test:80 HTTP/1.1", host), malformed),
		rejected("line/version-lower-case", head("GET / http/1.1", host), malformed),
		rejected("line/version-two-digit-minor", head("GET / HTTP/1.10", host), malformed),
		rejected("line/version-no-minor", head("GET / HTTP/1", host), malformed),
		rejected("line/version-missing", head("GET /", host), malformed),
		rejected("line/version-2.0", head("GET / HTTP/2.0", host), version),
		rejected("line/version-1.2", head("GET / HTTP/1.2", host), version),
		rejected("line/version-0.9", head("GET / HTTP/0.9", host), version),
		rejected("line/h2-preface-without-h2c", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", version),
		rejected("line/bare-lf-after-request-line", "GET / HTTP/1.1\n"+host+"\r\n\r\n", malformed),
		rejected("line/nine-leading-empty-lines", strings.Repeat("\r\n", 9)+head("GET / HTTP/1.1", host), malformed),
		rejected("line/leading-bare-lf", "\n"+head("GET / HTTP/1.1", host), malformed),
		rejected("line/too-long", head("GET /"+strings.Repeat("a", 2*testMaxRequestLine)+" HTTP/1.1", host), lineTooLong),
		rejected("line/connect", head("CONNECT h.test:443 HTTP/1.1", "Host: h.test:443"), method),
	)

	// Header fields.
	add(
		rejected("field/space-before-colon", head("GET / HTTP/1.1", host, "X-A : 1"), malformed),
		rejected("field/tab-before-colon", head("GET / HTTP/1.1", host, "X-A\t: 1"), malformed),
		rejected("field/host-space-before-colon", head("GET / HTTP/1.1", "Host : h.test"), malformed),
		rejected("field/no-colon", head("GET / HTTP/1.1", host, "X-A 1"), malformed),
		rejected("field/empty-name", head("GET / HTTP/1.1", host, ": v"), malformed),
		rejected("field/obs-fold-space", head("GET / HTTP/1.1", host, "X-A: 1", " 2"), malformed),
		rejected("field/obs-fold-tab", head("GET / HTTP/1.1", host, "X-A: 1", "\t2"), malformed),
		rejected("field/first-line-folded", head("GET / HTTP/1.1", " X-A: 1", host), malformed),
		rejected("field/bare-cr-in-value", head("GET / HTTP/1.1", host, "X-A: a\rb"), malformed),
		rejected("field/cr-cr-lf", head("GET / HTTP/1.1", host, "X-A: a\r"), malformed),
		rejected("field/bare-lf-between-fields", "GET / HTTP/1.1\r\n"+host+"\nX-A: 1\r\n\r\n", malformed),
		rejected("field/bare-lf-ends-head", "GET / HTTP/1.1\r\n"+host+"\r\n\n", malformed),
		rejected("field/nul-in-value", head("GET / HTTP/1.1", host, "X-A: a\x00b"), malformed),
		rejected("field/ctl-in-value", head("GET / HTTP/1.1", host, "X-A: a\x01b"), malformed),
		rejected("field/vertical-tab-in-value", head("GET / HTTP/1.1", host, "X-A: a\x0bb"), malformed),
		rejected("field/del-in-value", head("GET / HTTP/1.1", host, "X-A: a\x7fb"), malformed),
		rejected("field/nul-in-name", head("GET / HTTP/1.1", host, "X\x00A: 1"), malformed),
		rejected("field/non-token-name", head("GET / HTTP/1.1", host, "X(A): 1"), malformed),
		rejected("field/non-ascii-name", head("GET / HTTP/1.1", host, "X\xe9: 1"), malformed),
	)

	// Limits of the head.
	many := []string{"GET / HTTP/1.1", host}
	for i := range testMaxHeaderFields {
		many = append(many, "X-F"+strconv.Itoa(i)+": v")
	}
	bulky := []string{"GET / HTTP/1.1", host}
	for i := range testMaxHeaderFields - 2 {
		bulky = append(bulky, "X-B"+strconv.Itoa(i)+": "+strings.Repeat("b", 2*testMaxHeaderBytes/testMaxHeaderFields))
	}
	add(
		rejected("limit/one-field-too-large", head("GET / HTTP/1.1", host, "X-Big: "+strings.Repeat("a", 2*testMaxHeaderBytes)), headerLarge),
		rejected("limit/too-many-fields", head(many...), headerLarge),
		rejected("limit/header-section-too-large", head(bulky...), headerLarge),
	)

	// Host.
	add(
		rejected("host/missing", head("GET / HTTP/1.1"), hostInvalid),
		rejected("host/duplicate", head("GET / HTTP/1.1", host, "Host: other.test"), hostInvalid),
		rejected("host/duplicate-identical", head("GET / HTTP/1.1", host, host), hostInvalid),
		rejected("host/userinfo", head("GET / HTTP/1.1", "Host: user@h.test"), hostInvalid),
		rejected("host/space-inside", head("GET / HTTP/1.1", "Host: h test"), hostInvalid),
		rejected("host/slash", head("GET / HTTP/1.1", "Host: h.test/x"), hostInvalid),
		rejected("host/quote", head("GET / HTTP/1.1", "Host: h\"x"), hostInvalid),
		rejected("host/port-not-digits", head("GET / HTTP/1.1", "Host: h.test:8a"), hostInvalid),
		rejected("host/unclosed-ipv6", head("GET / HTTP/1.1", "Host: [::1"), hostInvalid),
		rejected("host/absolute-form-without-host-field", head("GET http://abs.test/ HTTP/1.1"), hostInvalid),
		rejected("host/absolute-form-userinfo", head("GET http://u@abs.test/ HTTP/1.1", host), hostInvalid),
		rejected("host/absolute-form-invalid-host-field", head("GET http://abs.test/ HTTP/1.1", "Host: a@b"), hostInvalid),
	)

	// Framing: Transfer-Encoding and Content-Length.
	te := func(name, value string, w want) tcase {
		return rejected(name, chunkedPost("/", value, "5\r\nhello\r\n0\r\n\r\n"), w)
	}
	cl := func(name string, w want, values ...string) tcase {
		lines := []string{"POST / HTTP/1.1", host}
		for _, v := range values {
			lines = append(lines, "Content-Length: "+v)
		}
		return rejected(name, head(lines...)+"hello", w)
	}
	add(
		rejected("framing/content-length-and-chunked", head("POST / HTTP/1.1", host, "Content-Length: 5", "Transfer-Encoding: chunked")+"5\r\nhello\r\n0\r\n\r\n", framing),
		rejected("framing/chunked-and-content-length", head("POST / HTTP/1.1", host, "Transfer-Encoding: chunked", "Content-Length: 5")+"5\r\nhello\r\n0\r\n\r\n", framing),
		rejected("framing/lower-case-names", head("POST / HTTP/1.1", host, "content-length: 5", "transfer-encoding: chunked")+"5\r\nhello\r\n0\r\n\r\n", framing),
		te("framing/te-xchunked", "xchunked", framing),
		te("framing/te-chunked-identity", "chunked, identity", framing),
		te("framing/te-upper-case", "CHUNKED", framing),
		te("framing/te-capitalised", "Chunked", framing),
		te("framing/te-tab-inside", "chu\tnked", framing),
		te("framing/te-trailing-empty-element", "chunked\t,", framing),
		te("framing/te-leading-empty-element", ", chunked", framing),
		te("framing/te-quoted", "\"chunked\"", framing),
		te("framing/te-empty", "", framing),
		te("framing/te-with-parameter", "chunked;q=1", framing),
		te("framing/te-gzip", "gzip", framing),
		te("framing/te-vertical-tab", "\x0bchunked", malformed),
		// Bytes some parsers take for white space (NEL, NBSP): obs-text,
		// valid in a value, so the value is simply not "chunked".
		te("framing/te-trailing-nel", "chunked\x85", framing),
		te("framing/te-leading-nbsp", "\xa0chunked", framing),
		cl("framing/cl-trailing-nel", framing, "5\x85"),
		te("framing/te-gzip-chunked", "gzip, chunked", coding),
		te("framing/te-identity-chunked", "identity, chunked", coding),
		rejected("framing/te-twice", head("POST / HTTP/1.1", host, "Transfer-Encoding: chunked", "Transfer-Encoding: chunked")+"5\r\nhello\r\n0\r\n\r\n", framing),
		rejected("framing/te-http10", head("POST / HTTP/1.0", host, "Transfer-Encoding: chunked")+"5\r\nhello\r\n0\r\n\r\n", framing),
		rejected("framing/te-obs-fold", head("POST / HTTP/1.1", host, "Transfer-Encoding:", " chunked")+"5\r\nhello\r\n0\r\n\r\n", malformed),
		rejected("framing/te-space-before-colon", head("POST / HTTP/1.1", host, "Transfer-Encoding : chunked", "Content-Length: 5")+"hello", malformed),
		cl("framing/cl-plus", framing, "+5"),
		cl("framing/cl-minus", framing, "-5"),
		cl("framing/cl-hex", framing, "0x5"),
		cl("framing/cl-space-inside", framing, "5 5"),
		cl("framing/cl-empty", framing, ""),
		cl("framing/cl-decimal", framing, "5.0"),
		cl("framing/cl-exponent", framing, "5e0"),
		cl("framing/cl-list-differing", framing, "5, 6"),
		cl("framing/cl-repeated-differing", framing, "5", "6"),
		cl("framing/cl-repeated-then-list-differing", framing, "5", "5, 6"),
		cl("framing/cl-19-digits", framing, "0000000000000000005"),
		cl("framing/cl-overflow", framing, "99999999999999999999"),
	)

	// Chunked bodies. big is a first chunk large enough that the gateway
	// forwards it before it reads further.
	big := strconv.FormatInt(forwardedSize, 16) + "\r\n" + strings.Repeat("x", forwardedSize)
	add(
		badChunked("chunked/size-not-hex", "g\r\nhello\r\n0\r\n\r\n"),
		badChunked("chunked/size-negative", "-5\r\nhello\r\n0\r\n\r\n"),
		badChunked("chunked/size-0x", "0x5\r\nhello\r\n0\r\n\r\n"),
		badChunked("chunked/size-empty", "\r\nhello\r\n0\r\n\r\n"),
		badChunked("chunked/size-leading-space", " 5\r\nhello\r\n0\r\n\r\n"),
		badChunked("chunked/size-17-digits", "00000000000000005\r\nhello\r\n0\r\n\r\n"),
		badChunked("chunked/size-17-hex-digits", "fffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
		badChunked("chunked/bare-lf-after-size", "5\nhello\r\n0\r\n\r\n"),
		badChunked("chunked/bare-lf-after-data", "5\r\nhello\n0\r\n\r\n"),
		badChunked("chunked/missing-crlf-after-data", "5\r\nhello0\r\n\r\n"),
		badChunked("chunked/data-overrun", "5\r\nhelloXX\r\n0\r\n\r\n"),
		badChunked("chunked/bare-lf-after-last-chunk", "5\r\nhello\r\n0\n\r\n"),
		badChunked("chunked/bare-lf-ends-trailers", "5\r\nhello\r\n0\r\n\n"),
		badChunked("chunked/extension-too-long", "5;"+strings.Repeat("e", 5000)+"\r\nhello\r\n0\r\n\r\n"),
		badChunked("chunked/malformed-trailer", "5\r\nhello\r\n0\r\nX-T 1\r\n\r\n"),
		badChunked("chunked/second-chunk-broken", "5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n"),
		// The same once the gateway has begun forwarding the body: the
		// upstream connection must be discarded with the request
		// incomplete, and never reused (the probe that follows would
		// otherwise land inside the broken body).
		badChunked("chunked/broken-while-forwarding", big+"\r\nzz\r\nworld\r\n0\r\n\r\n"),
		badChunked("chunked/overrun-while-forwarding", big+"XX\r\n0\r\n\r\n"),
	)

	// The route's max_body, and slow clients.
	drip := []string{"GET / HTTP/1.1\r\n" + host + "\r\nX-Drip: "}
	for range 40 {
		drip = append(drip, "a")
	}
	add(
		rejected("limit/content-length-over-max-body", head("POST /small HTTP/1.1", host, "Content-Length: 100"), bodyLarge),
		rejected("limit/content-length-over-max-body-expect", head("POST /small HTTP/1.1", host, "Expect: 100-continue", "Content-Length: 100"), bodyLarge),
		tcase{name: "limit/chunked-over-max-body", send: []string{chunkedPost("/small", "chunked", "14\r\n"+strings.Repeat("c", 20)+"\r\n0\r\n\r\n")},
			want: []want{bodyLarge}, closed: true, partialOK: true},
		tcase{name: "limit/chunked-pieces-over-max-body", send: []string{chunkedPost("/small", "chunked", strings.Repeat("8\r\n12345678\r\n", 3)+"0\r\n\r\n")},
			want: []want{bodyLarge}, closed: true, partialOK: true},
		accepted("limit/content-length-at-max-body", post("/small", strings.Repeat("m", testMaxBody)),
			up("POST", "/small", strings.Repeat("m", testMaxBody), host)),
		rejected("limit/slow-head", "GET / HTTP/1.1\r\n"+host+"\r\n", timeout),
		rejected("limit/slow-request-line", "GET /", timeout),
		tcase{name: "limit/slow-drip", send: drip, pause: 100 * time.Millisecond, want: []want{timeout}, closed: true},
		tcase{name: "limit/body-stall", send: []string{head("POST / HTTP/1.1", host, "Content-Length: 10") + "hello"},
			want: []want{timeout}, closed: true, partialOK: true},
		tcase{name: "limit/body-short-client-closes", send: []string{head("POST / HTTP/1.1", host, "Content-Length: 10") + "hello"},
			halfClose: true, closed: true, partialOK: true},
		tcase{name: "limit/chunked-over-max-body-while-forwarding",
			send: []string{chunkedPost("/medium", "chunked", big+"\r\n0\r\n\r\n")},
			want: []want{bodyLarge}, closed: true, partialOK: true},
		accepted("limit/content-length-at-max-body-forwarded", post("/medium", strings.Repeat("m", testMediumBody)),
			up("POST", "/medium", strings.Repeat("m", testMediumBody), host)),
		tcase{name: "limit/body-stall-while-forwarding",
			send: []string{head("POST / HTTP/1.1", host, "Content-Length: "+strconv.Itoa(2*forwardedSize)) + strings.Repeat("s", forwardedSize)},
			want: []want{timeout}, closed: true, partialOK: true},
		tcase{name: "limit/body-short-while-forwarding-client-closes",
			send:      []string{head("POST / HTTP/1.1", host, "Content-Length: "+strconv.Itoa(2*forwardedSize)) + strings.Repeat("s", forwardedSize)},
			halfClose: true, closed: true, partialOK: true},
	)

	// Hop-by-hop fields.
	h2cSettings := "HTTP2-Settings: AAMAAABkAAQAAP__"
	add(
		accepted("hop/connection-named-fields-removed",
			head("GET / HTTP/1.1", host, "Connection: X-Secret, keep-alive", "X-Secret: s", "Keep-Alive: timeout=5", "X-Kept: k"),
			up("GET", "/", "", host, "X-Kept: k")),
		accepted("hop/standard-hop-by-hop-removed",
			head("GET / HTTP/1.1", host, "Keep-Alive: timeout=5", "Proxy-Connection: keep-alive", "TE: trailers", "Trailer: X-T", "Upgrade: foo/1", "X-Kept: k"),
			up("GET", "/", "", host, "X-Kept: k")),
		tcase{name: "hop/connection-cannot-remove-content-length",
			send: []string{head("POST /p HTTP/1.1", host, "Connection: close, Content-Length", "Content-Length: 5") + "hello"},
			want: []want{ok()}, closed: true, up: []upReq{up("POST", "/p", "hello", host)}},
		accepted("hop/connection-cannot-remove-transfer-encoding",
			chunkedPost("/p", "chunked", "5\r\nhello\r\n0\r\n\r\n", "Connection: Transfer-Encoding"),
			up("POST", "/p", "hello", host)),
		accepted("hop/connection-cannot-remove-host", head("GET / HTTP/1.1", host, "Connection: Host"), up("GET", "/", "", host)),
		accepted("hop/upgrade-h2c-never-forwarded",
			head("GET / HTTP/1.1", host, "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", h2cSettings),
			up("GET", "/", "", host)),
		accepted("hop/upgrade-h2c-on-upgrade-route",
			head("GET /ws HTTP/1.1", host, "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", h2cSettings),
			up("GET", "/ws", "", host)),
		accepted("hop/http2-settings-never-forwarded", head("GET / HTTP/1.1", host, h2cSettings), up("GET", "/", "", host)),
		accepted("hop/upgrade-on-route-without-upgrades",
			head("GET / HTTP/1.1", host, "Connection: Upgrade", "Upgrade: websocket"),
			up("GET", "/", "", host)),
	)

	// Forwarding fields: replaced for an untrusted peer, appended to for a
	// trusted one.
	spoof := []string{"X-Forwarded-For: 192.0.2.66", "X-Forwarded-Host: evil.test", "X-Forwarded-Proto: https",
		"Forwarded: for=192.0.2.66;proto=https;host=evil.test"}
	add(
		tcase{name: "forwarded/untrusted-replaced", send: []string{head(append([]string{"GET /f HTTP/1.1", host}, spoof...)...)},
			want: []want{ok()}, up: []upReq{up("GET", "/f", "", host)}, check: untrustedForwarding},
		tcase{name: "forwarded/untrusted-underscore-spellings",
			send: []string{head("GET /f HTTP/1.1", host, "X_Forwarded_For: 192.0.2.66", "X_Forwarded_Host: evil.test")},
			want: []want{ok()}, up: []upReq{up("GET", "/f", "", host)}, check: untrustedForwarding},
		tcase{name: "forwarded/untrusted-none", send: []string{head("GET /f HTTP/1.1", host)},
			want: []want{ok()}, up: []upReq{up("GET", "/f", "", host)}, check: untrustedForwarding},
		tcase{name: "forwarded/trusted-appended", trusted: true, send: []string{head(append([]string{"GET /f HTTP/1.1", host}, spoof...)...)},
			want: []want{ok()}, up: []upReq{up("GET", "/f", "", host)}, check: trustedForwarding},
		tcase{name: "forwarded/trusted-none", trusted: true, send: []string{head("GET /f HTTP/1.1", host)},
			want: []want{ok()}, up: []upReq{up("GET", "/f", "", host)}, check: untrustedForwarding},
	)
	return cs
}

// untrustedForwarding checks the forwarding fields candor sets for a client
// at 127.0.0.1 whose own forwarding fields (if any) must not survive:
// exactly one hop, the peer's.
func untrustedForwarding(t *testing.T, reqs []received) {
	t.Helper()
	f := reqs[0].fields
	wantValues(t, f, "X-Forwarded-For", "127.0.0.1")
	wantValues(t, f, "X-Forwarded-Proto", "http")
	wantValues(t, f, "X-Forwarded-Host", "h.test")
	wantForwarded(t, f, []map[string]string{{"for": "127.0.0.1", "proto": "http", "host": "h.test"}})
	noSpoof(t, f)
}

// trustedForwarding checks that candor appended its hop to a trusted
// proxy's forwarding fields and kept its original scheme and host.
func trustedForwarding(t *testing.T, reqs []received) {
	t.Helper()
	f := reqs[0].fields
	wantValues(t, f, "X-Forwarded-For", "192.0.2.66, 127.0.0.1")
	wantValues(t, f, "X-Forwarded-Proto", "https")
	wantValues(t, f, "X-Forwarded-Host", "evil.test")
	wantForwarded(t, f, []map[string]string{
		{"for": "192.0.2.66", "proto": "https", "host": "evil.test"},
		{"for": "127.0.0.1", "proto": "http", "host": "h.test"},
	})
}

// wantValues checks the values of name, joined as one list.
func wantValues(t *testing.T, fields []field, name, want string) {
	t.Helper()
	if got := strings.Join(values(fields, name), ", "); got != want {
		t.Errorf("upstream %s: %q, want %q", name, got, want)
	}
}

// wantForwarded checks Forwarded (RFC 7239 §4) element by element,
// parameters compared case-insensitively by name, values unquoted.
func wantForwarded(t *testing.T, fields []field, want []map[string]string) {
	t.Helper()
	var got []map[string]string
	for _, v := range values(fields, "Forwarded") {
		for elem := range strings.SplitSeq(v, ",") {
			m := map[string]string{}
			for pair := range strings.SplitSeq(strings.TrimSpace(elem), ";") {
				k, val, _ := strings.Cut(pair, "=")
				if uq, err := strconv.Unquote(val); err == nil && strings.HasPrefix(val, "\"") {
					val = uq
				}
				m[strings.ToLower(strings.TrimSpace(k))] = val
			}
			got = append(got, m)
		}
	}
	if len(got) != len(want) {
		t.Errorf("upstream Forwarded %q, want %v", values(fields, "Forwarded"), want)
		return
	}
	for i := range want {
		for k, v := range want[i] {
			if got[i][k] != v {
				t.Errorf("upstream Forwarded element %d: %s=%q, want %q (%q)", i+1, k, got[i][k], v, values(fields, "Forwarded"))
			}
		}
	}
}

// noSpoof checks that nothing of the client's spoofed forwarding values
// reached the upstream, under any spelling.
func noSpoof(t *testing.T, fields []field) {
	t.Helper()
	for _, f := range fields {
		if strings.Contains(f.value, "192.0.2.66") || strings.Contains(f.value, "evil.test") {
			t.Errorf("a spoofed forwarding value reached the upstream: %q", f.String())
		}
	}
}
