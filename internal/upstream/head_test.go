package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"candor/internal/failure"
)

// headCase is one row of TestReadHead: raw bytes in, and either the Head
// readHead must return or the failure it must report.
type headCase struct {
	name    string
	in      string // the response head(s); Size must equal len(in)
	body    string // bytes after the head, which readHead must leave unread
	method  string // default GET
	upgrade string // the request's Upgrade; default none
	lim     Limits // default testLimits
	want    *Head  // nil for a failure
	kind    failure.Kind
	detail  string // a substring of the failure's Detail
	eof     bool   // a plain io.EOF, no *failure.Error
}

// valid is a row whose head parses to want.
func valid(name, in string, want *Head) headCase {
	return headCase{name: name, in: in, want: want}
}

// invalid is a row that fails with kind k and a Detail containing detail.
func invalid(name, in string, k failure.Kind, detail string) headCase {
	return headCase{name: name, in: in, kind: k, detail: detail}
}

func (c headCase) withMethod(m string) headCase  { c.method = m; return c }
func (c headCase) withUpgrade(u string) headCase { c.upgrade = u; return c }
func (c headCase) withBody(b string) headCase    { c.body = b; return c }
func (c headCase) withLimits(l Limits) headCase  { c.lim = l; return c }

// headOpt adjusts an expected Head.
type headOpt func(*Head)

// resp builds an expected HTTP/1.1 Head.
func resp(status int, reason string, mode BodyMode, cl int64, opts ...headOpt) *Head {
	h := &Head{Status: status, Reason: reason, Minor: 1, Mode: mode, ContentLength: cl}
	for _, o := range opts {
		o(h)
	}
	return h
}

// fields sets the expected end-to-end fields from name, value pairs.
func fields(nv ...string) headOpt {
	return func(h *Head) {
		for i := 0; i+1 < len(nv); i += 2 {
			h.Fields = append(h.Fields, Field{Name: nv[i], Value: nv[i+1]})
		}
	}
}

func http10(h *Head)  { h.Minor = 0 }
func closing(h *Head) { h.Close = true }

// switched marks the expected Head of a 101 to protocols.
func switched(protocols string) headOpt {
	return func(h *Head) { h.Upgrade, h.Close = protocols, true }
}

func keepAliveHint(n int) headOpt { return func(h *Head) { h.KeepAlive = n } }

// sizedHead returns a valid head of exactly n bytes (n >= 47).
func sizedHead(n int) string {
	const pre, post = "HTTP/1.1 200 OK\r\nX-Pad: ", "\r\nContent-Length: 0\r\n\r\n"
	return pre + strings.Repeat("a", n-len(pre)-len(post)) + post
}

func sizedHeadWant(n int) *Head {
	const fixed = len("HTTP/1.1 200 OK\r\nX-Pad: \r\nContent-Length: 0\r\n\r\n")
	return resp(200, "OK", BodyLength, 0, fields("X-Pad", strings.Repeat("a", n-fixed)))
}

// fieldsHead returns a close-delimited head with n fields X-F1..X-Fn.
func fieldsHead(n int) (string, *Head) {
	var b strings.Builder
	b.WriteString("HTTP/1.1 200 OK\r\n")
	want := resp(200, "OK", BodyClose, -1, closing)
	for i := 1; i <= n; i++ {
		name := "X-F" + strconv.Itoa(i)
		b.WriteString(name + ": v\r\n")
		want.Fields = append(want.Fields, Field{Name: name, Value: "v"})
	}
	b.WriteString("\r\n")
	return b.String(), want
}

// interim returns n 1xx interim responses.
func interim(n int) string {
	return strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", n)
}

const (
	okCL5   = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
	final   = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	h2Frame = "\x00\x00\x12\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64\x00\x04\x00\x01\x00\x00\x00\x05\x00\x00\x40\x00"
)

func headCases() []headCase {
	limBoundary := Limits{Bytes: 256, Fields: 100}
	fields9, want9 := fieldsHead(9)
	fields10, want10 := fieldsHead(10)
	fields11, _ := fieldsHead(11)
	limFields := Limits{Bytes: 8 << 10, Fields: 10}
	long := strings.Repeat("x", 5000)

	return []headCase{
		// Valid responses and their framing.
		valid("200 with Content-Length",
			"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n",
			resp(200, "OK", BodyLength, 5, fields("Content-Type", "text/plain"))).withBody("hello"),
		valid("404 with Content-Length",
			"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\n",
			resp(404, "Not Found", BodyLength, 9)).withBody("not found"),
		valid("500 with Content-Length 0",
			"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
			resp(500, "Internal Server Error", BodyLength, 0)),
		valid("503 with Retry-After",
			"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 3\r\n\r\n",
			resp(503, "Service Unavailable", BodyLength, 3, fields("Retry-After", "7"))).withBody("bye"),
		valid("599 is the highest status",
			"HTTP/1.1 599 Whatever\r\nContent-Length: 0\r\n\r\n",
			resp(599, "Whatever", BodyLength, 0)),
		valid("chunked",
			"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n",
			resp(200, "OK", BodyChunked, -1, fields("Content-Type", "text/plain"))).withBody("5\r\nhello\r\n0\r\n\r\n"),
		valid("chunked in upper case",
			"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n",
			resp(200, "OK", BodyChunked, -1)),
		valid("chunked with empty list elements",
			"HTTP/1.1 200 OK\r\nTransfer-Encoding: , chunked ,\r\n\r\n",
			resp(200, "OK", BodyChunked, -1)),
		valid("close-delimited",
			"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n",
			resp(200, "OK", BodyClose, -1, closing, fields("Content-Type", "text/plain"))).withBody("until close"),
		valid("HEAD response keeps its Content-Length",
			"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
			resp(200, "OK", BodyNone, 1234)).withMethod("HEAD"),
		valid("HEAD response with chunked has no body",
			"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
			resp(200, "OK", BodyNone, -1)).withMethod("HEAD"),
		valid("HEAD response without framing is not close-delimited",
			"HTTP/1.1 200 OK\r\n\r\n",
			resp(200, "OK", BodyNone, -1)).withMethod("HEAD"),
		valid("204",
			"HTTP/1.1 204 No Content\r\n\r\n",
			resp(204, "No Content", BodyNone, -1)),
		valid("204 ignores a Content-Length",
			"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
			resp(204, "No Content", BodyNone, -1)),
		valid("304 keeps its Content-Length",
			"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 10\r\n\r\n",
			resp(304, "Not Modified", BodyNone, 10, fields("ETag", `"x"`))),
		valid("304 without framing",
			"HTTP/1.1 304 Not Modified\r\n\r\n",
			resp(304, "Not Modified", BodyNone, -1)),
		valid("no reason phrase",
			"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
			resp(200, "", BodyLength, 0)),
		valid("empty reason phrase after SP",
			"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n",
			resp(200, "", BodyLength, 0)),
		valid("reason with SP, HTAB and obs-text",
			"HTTP/1.1 200 Tr\xe8s\tbien  ok\r\nContent-Length: 0\r\n\r\n",
			resp(200, "Tr\xe8s\tbien  ok", BodyLength, 0)),
		valid("HTTP/1.0 closes",
			"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n",
			resp(200, "OK", BodyLength, 2, http10, closing)).withBody("ok"),
		valid("HTTP/1.0 keep-alive",
			"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\n",
			resp(200, "OK", BodyLength, 2, http10, keepAliveHint(5))),
		valid("HTTP/1.0 close-delimited",
			"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n",
			resp(200, "OK", BodyClose, -1, http10, closing)),

		// Interim responses (RFC 9110 §15.2).
		valid("100 Continue skipped",
			"HTTP/1.1 100 Continue\r\n\r\n"+okCL5,
			resp(200, "OK", BodyLength, 5)).withBody("hello"),
		valid("103 Early Hints skipped with its fields",
			"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nLink: </b.css>; rel=preload\r\nContent-Length: 0\r\n\r\n",
			resp(200, "OK", BodyLength, 0, fields("Link", "</b.css>; rel=preload"))),
		valid("102 then 103 then final",
			"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n"+final,
			resp(200, "OK", BodyLength, 0)),
		valid("8 interim responses are the limit",
			interim(8)+final,
			resp(200, "OK", BodyLength, 0)),
		invalid("9 interim responses", interim(9)+final,
			failure.MalformedStatusLine, "more than 8 interim 1xx responses"),
		invalid("101 without Upgrade",
			"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
			failure.UnexpectedUpgrade, "101 Switching Protocols"),
		invalid("101 after 100",
			"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\n\r\n",
			failure.UnexpectedUpgrade, "101"),
		// 101 in answer to an Upgrade (RFC 9110 §7.8, §15.2.2).
		valid("101 to the offered protocol",
			"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
			resp(101, "Switching Protocols", BodyNone, -1, fields("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), switched("websocket"))).
			withUpgrade("websocket").withBody("\x81\x02hi"),
		valid("101 protocol names are case-insensitive",
			"HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: upgrade\r\n\r\n",
			resp(101, "Switching Protocols", BodyNone, -1, switched("WebSocket"))).withUpgrade("websocket"),
		valid("101 to one of several offered",
			"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket/13\r\n\r\n",
			resp(101, "Switching Protocols", BodyNone, -1, switched("websocket/13"))).withUpgrade("foo/2, websocket"),
		valid("101 after 100 to an upgrade request",
			"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
			resp(101, "Switching Protocols", BodyNone, -1, switched("websocket"))).withUpgrade("websocket"),
		valid("101 drops fields named by Connection",
			"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
			resp(101, "Switching Protocols", BodyNone, -1, fields("Sec-WebSocket-Protocol", "chat"), switched("websocket"), keepAliveHint(5))).withUpgrade("websocket"),
		valid("426 to an upgrade request is a plain response",
			"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n",
			resp(426, "Upgrade Required", BodyLength, 0)).withUpgrade("websocket"),
		invalid("101 to a protocol not offered",
			"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
			failure.UnexpectedUpgrade, `to "h2c", which the request did not offer`).withUpgrade("websocket"),
		invalid("101 to an offered and a not offered protocol",
			"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket, h2c\r\n\r\n",
			failure.UnexpectedUpgrade, `"h2c"`).withUpgrade("websocket"),
		invalid("101 to another version",
			"HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo/3\r\n\r\n",
			failure.UnexpectedUpgrade, "did not offer").withUpgrade("foo/2"),
		invalid("101 without Upgrade to an upgrade request",
			"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n",
			failure.UnexpectedUpgrade, "without an Upgrade field").withUpgrade("websocket"),
		invalid("101 with an empty Upgrade",
			"HTTP/1.1 101 Switching Protocols\r\nUpgrade: , \r\n\r\n",
			failure.UnexpectedUpgrade, "without an Upgrade field").withUpgrade("websocket"),
		invalid("101 with Content-Length",
			"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n",
			failure.InvalidFraming, "Content-Length in a 101").withUpgrade("websocket"),
		invalid("101 with Transfer-Encoding",
			"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nTransfer-Encoding: chunked\r\n\r\n",
			failure.InvalidFraming, "Transfer-Encoding in a 101").withUpgrade("websocket"),
		invalid("malformed field in an interim response",
			"HTTP/1.1 103 Early Hints\r\nLink : x\r\n\r\n"+final,
			failure.MalformedHeader, "whitespace before the colon"),
		invalid("EOF after an interim response", interim(1),
			failure.TruncatedHead, "connection closed after 25 bytes"),

		// Malformed status lines (RFC 9112 §4).
		invalid("garbage", "hello world\r\n\r\n",
			failure.MalformedStatusLine, "not an HTTP/1.x status line"),
		invalid("empty status line", "\r\n"+final,
			failure.MalformedStatusLine, "not an HTTP/1.x status line"),
		invalid("2-digit code", "HTTP/1.1 20 OK\r\n\r\n",
			failure.MalformedStatusLine, "status code is not three digits"),
		invalid("4-digit code", "HTTP/1.1 2000 OK\r\n\r\n",
			failure.MalformedStatusLine, "expected SP after the status code"),
		invalid("alphabetic code", "HTTP/1.1 2x0 OK\r\n\r\n",
			failure.MalformedStatusLine, "status code is not three digits"),
		invalid("code 000", "HTTP/1.1 000 OK\r\n\r\n",
			failure.MalformedStatusLine, "status code outside 100-599"),
		invalid("code 099", "HTTP/1.1 099 OK\r\n\r\n",
			failure.MalformedStatusLine, "status code outside 100-599"),
		invalid("code 600", "HTTP/1.1 600 OK\r\n\r\n",
			failure.MalformedStatusLine, "status code outside 100-599"),
		invalid("HTTP/2.0", "HTTP/2.0 200 OK\r\n\r\n",
			failure.MalformedStatusLine, "not HTTP/1.x"),
		invalid("HTTP/1.x", "HTTP/1.x 200 OK\r\n\r\n",
			failure.MalformedStatusLine, "invalid HTTP version"),
		invalid("HTTP/1.10", "HTTP/1.10 200 OK\r\n\r\n",
			failure.MalformedStatusLine, "expected SP after the HTTP version"),
		invalid("lower-case http", "http/1.1 200 OK\r\n\r\n",
			failure.MalformedStatusLine, "not an HTTP/1.x status line"),
		invalid("double SP after the version", "HTTP/1.1  200 OK\r\n\r\n",
			failure.MalformedStatusLine, "status code is not three digits"),
		invalid("no SP after the version", "HTTP/1.1200 OK\r\n\r\n",
			failure.MalformedStatusLine, "expected SP after the HTTP version"),
		invalid("no SP after the code", "HTTP/1.1 200OK\r\n\r\n",
			failure.MalformedStatusLine, "expected SP after the status code"),
		invalid("HTAB after the code", "HTTP/1.1 200\tOK\r\n\r\n",
			failure.MalformedStatusLine, "expected SP after the status code"),
		invalid("truncated code", "HTTP/1.1 20\r\n\r\n",
			failure.MalformedStatusLine, "status line too short"),
		invalid("version only", "HTTP/1.1\r\n\r\n",
			failure.MalformedStatusLine, "status line too short"),
		invalid("NUL in the reason", "HTTP/1.1 200 O\x00K\r\n\r\n",
			failure.MalformedStatusLine, "control character in the reason phrase"),
		invalid("0x01 in the reason", "HTTP/1.1 200 O\x01K\r\n\r\n",
			failure.MalformedStatusLine, "control character in the reason phrase"),
		invalid("DEL in the reason", "HTTP/1.1 200 O\x7fK\r\n\r\n",
			failure.MalformedStatusLine, "control character in the reason phrase"),
		invalid("bare LF after the status line", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
			failure.MalformedStatusLine, "status line ends in a bare LF"),
		invalid("bare CR in the status line", "HTTP/1.1 200 O\rK\r\n\r\n",
			failure.MalformedStatusLine, "status line contains a bare CR"),
		invalid("status line ends in CR CR LF", "HTTP/1.1 200 OK\r\r\n\r\n",
			failure.MalformedStatusLine, "bare CR"),

		// Header fields (RFC 9112 §5, RFC 9110 §5.5).
		valid("values trimmed of OWS, inner whitespace kept",
			"HTTP/1.1 200 OK\r\nX-A: \t a  b\tc \t\r\nX-Empty:\r\nX-Obs: caf\xe9\r\nContent-Length: 0\r\n\r\n",
			resp(200, "OK", BodyLength, 0, fields("X-A", "a  b\tc", "X-Empty", "", "X-Obs", "caf\xe9"))),
		valid("repeated fields keep their order and case",
			"HTTP/1.1 200 OK\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\nX-Tok: !#$%&'*+-.^_`|~09azAZ\r\nContent-Length: 0\r\n\r\n",
			resp(200, "OK", BodyLength, 0, fields("set-cookie", "a=1", "Set-Cookie", "b=2", "X-Tok", "!#$%&'*+-.^_`|~09azAZ"))),
		invalid("no colon", "HTTP/1.1 200 OK\r\nX-Foo bar\r\n\r\n",
			failure.MalformedHeader, "header line 1: no colon"),
		invalid("SP before the colon", "HTTP/1.1 200 OK\r\nX-Foo : bar\r\n\r\n",
			failure.MalformedHeader, "whitespace before the colon"),
		invalid("HTAB before the colon", "HTTP/1.1 200 OK\r\nX-Foo\t: bar\r\n\r\n",
			failure.MalformedHeader, "whitespace before the colon"),
		invalid("SP inside the name", "HTTP/1.1 200 OK\r\nX Foo: bar\r\n\r\n",
			failure.MalformedHeader, "invalid character in the field name"),
		invalid("@ in the name", "HTTP/1.1 200 OK\r\nX@Foo: bar\r\n\r\n",
			failure.MalformedHeader, "invalid character in the field name"),
		invalid("obs-text in the name", "HTTP/1.1 200 OK\r\nX-F\xe9: bar\r\n\r\n",
			failure.MalformedHeader, "invalid character in the field name"),
		invalid("empty name", "HTTP/1.1 200 OK\r\n: bar\r\n\r\n",
			failure.MalformedHeader, "empty field name"),
		invalid("NUL in a value", "HTTP/1.1 200 OK\r\nX-Foo: a\x00b\r\n\r\n",
			failure.MalformedHeader, "control character in the field value"),
		invalid("0x01 in a value", "HTTP/1.1 200 OK\r\nX-Foo: a\x01b\r\n\r\n",
			failure.MalformedHeader, "control character in the field value"),
		invalid("DEL in a value", "HTTP/1.1 200 OK\r\nX-Foo: a\x7fb\r\n\r\n",
			failure.MalformedHeader, "control character in the field value"),
		invalid("CR in a value", "HTTP/1.1 200 OK\r\nX-Foo: a\rb\r\n\r\n",
			failure.MalformedHeader, "header line 1 contains a bare CR"),
		invalid("obs-fold with SP", "HTTP/1.1 200 OK\r\nX-Foo: a\r\n b\r\n\r\n",
			failure.MalformedHeader, "header line 2: obsolete line folding"),
		invalid("obs-fold with HTAB", "HTTP/1.1 200 OK\r\nX-Foo: a\r\n\tb\r\n\r\n",
			failure.MalformedHeader, "obsolete line folding"),
		invalid("whitespace before the first field", "HTTP/1.1 200 OK\r\n X-Foo: a\r\n\r\n",
			failure.MalformedHeader, "header line 1: obsolete line folding"),
		invalid("bare LF after a field", "HTTP/1.1 200 OK\r\nX-Foo: a\nX-Bar: b\r\n\r\n",
			failure.MalformedHeader, "header line 1 ends in a bare LF"),
		invalid("bare LF ends the head", "HTTP/1.1 200 OK\r\nX-Foo: a\r\n\n",
			failure.MalformedHeader, "header line 2 ends in a bare LF"),
		invalid("error names its line", "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC 3\r\n\r\n",
			failure.MalformedHeader, "header line 3: no colon"),

		// Framing (RFC 9112 §6, RFC 9110 §8.6).
		valid("identical Content-Length on two lines",
			"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
			resp(200, "OK", BodyLength, 5)),
		valid("identical Content-Length in a list",
			"HTTP/1.1 200 OK\r\nContent-Length: 5, 5 ,5\r\n\r\n",
			resp(200, "OK", BodyLength, 5)),
		valid("Content-Length with leading zeros",
			"HTTP/1.1 200 OK\r\nContent-Length: 005\r\nContent-Length: 5\r\n\r\n",
			resp(200, "OK", BodyLength, 5)),
		valid("Content-Length of 18 digits",
			"HTTP/1.1 200 OK\r\nContent-Length: 999999999999999999\r\n\r\n",
			resp(200, "OK", BodyLength, 999999999999999999)),
		invalid("Content-Length and chunked", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
			failure.InvalidFraming, "both Content-Length and Transfer-Encoding"),
		invalid("chunked and Content-Length", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
			failure.InvalidFraming, "both Content-Length and Transfer-Encoding"),
		invalid("Content-Length and chunked on HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
			failure.InvalidFraming, "both Content-Length and Transfer-Encoding").withMethod("HEAD"),
		invalid("different Content-Length lines", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
			failure.InvalidFraming, "conflicting Content-Length values 5 and 6"),
		invalid("different Content-Length in a list", "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
			failure.InvalidFraming, "conflicting Content-Length values 5 and 6"),
		invalid("different Content-Length on 304", "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
			failure.InvalidFraming, "conflicting Content-Length"),
		invalid("Content-Length +5", "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
			failure.InvalidFraming, `invalid Content-Length "+5"`),
		invalid("Content-Length -1", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
			failure.InvalidFraming, `invalid Content-Length "-1"`),
		invalid("Content-Length 0x10", "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
			failure.InvalidFraming, `invalid Content-Length "0x10"`),
		invalid("Content-Length empty", "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
			failure.InvalidFraming, `invalid Content-Length ""`),
		invalid("Content-Length with a trailing comma", "HTTP/1.1 200 OK\r\nContent-Length: 5,\r\n\r\n",
			failure.InvalidFraming, "invalid Content-Length"),
		invalid("Content-Length with inner space", "HTTP/1.1 200 OK\r\nContent-Length: 5 5\r\n\r\n",
			failure.InvalidFraming, "invalid Content-Length"),
		invalid("Content-Length of 19 digits", "HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000000\r\n\r\n",
			failure.InvalidFraming, "invalid Content-Length"),
		invalid("invalid Content-Length in an interim response", "HTTP/1.1 100 Continue\r\nContent-Length: x\r\n\r\n"+final,
			failure.InvalidFraming, "invalid Content-Length"),
		invalid("TE gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
			failure.InvalidFraming, "Transfer-Encoding other than a single chunked"),
		invalid("TE identity", "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n",
			failure.InvalidFraming, "Transfer-Encoding other than a single chunked"),
		invalid("TE chunked, gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
			failure.InvalidFraming, "Transfer-Encoding other than a single chunked"),
		invalid("TE gzip, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
			failure.InvalidFraming, "Transfer-Encoding other than a single chunked"),
		invalid("TE chunked, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
			failure.InvalidFraming, "Transfer-Encoding other than a single chunked"),
		invalid("TE chunked on two lines", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
			failure.InvalidFraming, "Transfer-Encoding other than a single chunked"),
		invalid("TE xchunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n",
			failure.InvalidFraming, "Transfer-Encoding other than a single chunked"),
		invalid("TE empty", "HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\n",
			failure.InvalidFraming, "Transfer-Encoding other than a single chunked"),
		invalid("TE gzip on 204", "HTTP/1.1 204 No Content\r\nTransfer-Encoding: gzip\r\n\r\n",
			failure.InvalidFraming, "Transfer-Encoding other than a single chunked"),
		invalid("TE on HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
			failure.InvalidFraming, "Transfer-Encoding in an HTTP/1.0 response"),

		// Hop-by-hop fields (RFC 9110 §7.6.1) and Keep-Alive hints.
		valid("hop-by-hop fields removed",
			"HTTP/1.1 200 OK\r\nA: 1\r\nConnection: keep-alive\r\nKeep-Alive: timeout=9\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nB: 2\r\nTrailer: X-Sum\r\nUpgrade: h2c\r\ntransfer-encoding: chunked\r\nC: 3\r\n\r\n",
			resp(200, "OK", BodyChunked, -1, keepAliveHint(9), fields("A", "1", "B", "2", "C", "3"))),
		valid("Content-Length removed",
			"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nX: y\r\n\r\n",
			resp(200, "OK", BodyLength, 2, fields("X", "y"))),
		valid("fields named by Connection removed",
			"HTTP/1.1 200 OK\r\nConnection: x-foo, X-BAR\r\nX-Foo: 1\r\nx-bar: 2\r\nX-Baz: 3\r\nContent-Length: 0\r\n\r\n",
			resp(200, "OK", BodyLength, 0, fields("X-Baz", "3"))),
		valid("Connection: close",
			"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
			resp(200, "OK", BodyLength, 0, closing)),
		valid("Connection: close among other tokens",
			"HTTP/1.1 200 OK\r\nConnection: x-foo,, CLOSE\r\nX-Foo: 1\r\nContent-Length: 0\r\n\r\n",
			resp(200, "OK", BodyLength, 0, closing)),
		valid("Keep-Alive timeout after max",
			"HTTP/1.1 200 OK\r\nKeep-Alive: max=100, timeout=30\r\nContent-Length: 0\r\n\r\n",
			resp(200, "OK", BodyLength, 0, keepAliveHint(30))),
		valid("Keep-Alive Timeout in mixed case",
			"HTTP/1.1 200 OK\r\nKeep-Alive: Timeout=7\r\nContent-Length: 0\r\n\r\n",
			resp(200, "OK", BodyLength, 0, keepAliveHint(7))),
		valid("Keep-Alive timeout not a number",
			"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=abc\r\nContent-Length: 0\r\n\r\n",
			resp(200, "OK", BodyLength, 0)),
		valid("Keep-Alive timeout absurdly large",
			"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=99999999\r\nContent-Length: 0\r\n\r\n",
			resp(200, "OK", BodyLength, 0)),
		valid("Keep-Alive timeout with spaces around =",
			"HTTP/1.1 200 OK\r\nKeep-Alive: timeout = 5\r\nContent-Length: 0\r\n\r\n",
			resp(200, "OK", BodyLength, 0)),

		// Limits.
		valid("head of limit-1 bytes", sizedHead(255), sizedHeadWant(255)).withLimits(limBoundary),
		valid("head of exactly limit bytes", sizedHead(256), sizedHeadWant(256)).withLimits(limBoundary).withBody("next"),
		invalid("head of limit+1 bytes", sizedHead(257),
			failure.HeadTooLarge, "response head exceeds 256 bytes").withLimits(limBoundary),
		invalid("status line alone over the limit", "HTTP/1.1 200 OK\r\n\r\n",
			failure.HeadTooLarge, "exceeds 10 bytes").withLimits(Limits{Bytes: 10, Fields: 10}),
		invalid("interim responses count toward the byte limit", interim(3)+final,
			failure.HeadTooLarge, "exceeds 100 bytes").withLimits(Limits{Bytes: 100, Fields: 10}),
		valid("line longer than the read buffer",
			"HTTP/1.1 200 OK\r\nX-Long: "+long+"\r\nContent-Length: 0\r\n\r\n",
			resp(200, "OK", BodyLength, 0, fields("X-Long", long))),
		valid("limit-1 fields", fields9, want9).withLimits(limFields),
		valid("exactly limit fields", fields10, want10).withLimits(limFields),
		invalid("limit+1 fields", fields11,
			failure.HeadTooLarge, "more than 10 header fields").withLimits(limFields),

		// Other protocols.
		invalid("HTTP/2 SETTINGS frame", h2Frame,
			failure.ProtocolMismatch, "HTTP/2 frame"),
		invalid("HTTP/2 connection preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
			failure.ProtocolMismatch, "HTTP/2 connection preface"),
		invalid("TLS alert record", "\x15\x03\x03\x00\x02\x02\x46",
			failure.ProtocolMismatch, "TLS record"),
		invalid("TLS handshake record", "\x16\x03\x01\x00\x05hello",
			failure.ProtocolMismatch, "TLS record"),
		invalid("0x16 not followed by a TLS version", "\x16HTTP/1.1 200 OK\r\n\r\n",
			failure.MalformedStatusLine, "not an HTTP/1.x status line"),

		// The connection ends.
		{name: "EOF before any byte", in: "", eof: true},
		invalid("EOF in the status line", "HTTP/1.1 2",
			failure.TruncatedHead, "connection closed after 10 bytes of the response head"),
		invalid("EOF after one byte", "H",
			failure.TruncatedHead, "connection closed after 1 bytes"),
		invalid("EOF in a field", "HTTP/1.1 200 OK\r\nContent-Len",
			failure.TruncatedHead, "connection closed after 28 bytes"),
		invalid("EOF before the empty line", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n",
			failure.TruncatedHead, "connection closed after 36 bytes"),
	}
}

// TestReadHead runs every row through readHead twice: with a normal read
// buffer, and with a 16-byte one that splits every line across reads. Both
// must give the same answer, and a valid head must be consumed exactly.
func TestReadHead(t *testing.T) {
	cases := headCases()
	if len(cases) < 60 {
		t.Fatalf("only %d rows", len(cases))
	}
	for _, tc := range cases {
		for _, bufSize := range []int{4096, 16} {
			t.Run(tc.name+"/buf="+strconv.Itoa(bufSize), func(t *testing.T) {
				method := tc.method
				if method == "" {
					method = "GET"
				}
				lim := tc.lim
				if lim == (Limits{}) {
					lim = testLimits
				}
				br := bufio.NewReaderSize(strings.NewReader(tc.in+tc.body), bufSize)
				h, err := readHead(br, lim, method, tc.upgrade)
				switch {
				case tc.eof:
					if err != io.EOF || failure.KindOf(err) != failure.KindUnknown {
						t.Fatalf("readHead = %+v, %v; want a plain io.EOF", h, err)
					}
				case tc.want != nil:
					if err != nil {
						t.Fatalf("readHead: %v", err)
					}
					want := *tc.want
					want.Size = len(tc.in)
					if diff := cmp.Diff(&want, h, cmpopts.EquateEmpty()); diff != "" {
						t.Errorf("Head mismatch (-want +got):\n%s", diff)
					}
					rest, _ := io.ReadAll(br)
					if string(rest) != tc.body {
						t.Errorf("left unread %q, want %q", rest, tc.body)
					}
				default:
					if h != nil {
						t.Errorf("readHead returned a Head with error %v", err)
					}
					fe := asFailure(t, err)
					if fe.Kind != tc.kind {
						t.Errorf("kind = %v, want %v (%v)", fe.Kind, tc.kind, err)
					}
					if fe.Phase != failure.PhaseReadHead {
						t.Errorf("phase = %v, want read_head", fe.Phase)
					}
					if !strings.Contains(fe.Detail, tc.detail) {
						t.Errorf("detail = %q, want it to contain %q", fe.Detail, tc.detail)
					}
					if tc.kind == failure.TruncatedHead && !errors.Is(err, io.ErrUnexpectedEOF) {
						t.Errorf("a truncated head should wrap io.ErrUnexpectedEOF: %v", err)
					}
				}
			})
		}
	}
}

// TestReadHeadDetailQuotes checks that offending bytes reach the Detail
// escaped and bounded, so an upstream cannot forge log lines.
func TestReadHeadDetailQuotes(t *testing.T) {
	in := "HTTP/1.1 200 OK\r\nX-Evil: " + strings.Repeat("a", 200) + "\x00\r\n\r\n"
	_, err := readHead(bufio.NewReader(strings.NewReader(in)), testLimits, "GET", "")
	fe := asFailure(t, err)
	if strings.ContainsAny(fe.Detail, "\x00\r\n") {
		t.Errorf("detail has raw control bytes: %q", fe.Detail)
	}
	if !strings.Contains(fe.Detail, "bytes)") || len(fe.Detail) > 200 {
		t.Errorf("detail not truncated: %q", fe.Detail)
	}
}

// benchHead is a typical response head of ten fields.
const benchHead = "HTTP/1.1 200 OK\r\n" +
	"Date: Mon, 27 Jul 2009 12:28:53 GMT\r\n" +
	"Server: Apache/2.4.1 (Unix)\r\n" +
	"Last-Modified: Wed, 22 Jul 2009 19:15:56 GMT\r\n" +
	"ETag: \"34aa387-d-1568eb00\"\r\n" +
	"Accept-Ranges: bytes\r\n" +
	"Content-Length: 51\r\n" +
	"Vary: Accept-Encoding\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Cache-Control: max-age=60\r\n" +
	"X-Request-Id: 7b1c5d0e-2f4a-4e0b-9d5c-3a8f6e2b1c90\r\n" +
	"\r\n"

// BenchmarkReadHead reads heads as the transport does: into an attempt's
// Head with room for its fields, parsing in the connection's scratch
// memory. Its one allocation is the head's strings.
func BenchmarkReadHead(b *testing.B) {
	in := []byte(benchHead)
	rd := bytes.NewReader(in)
	br := bufio.NewReaderSize(rd, 4096)
	var hs headScratch
	var a attempt
	h := &a.head
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(in)
		br.Reset(rd)
		h.Fields = a.fields[:0]
		if err := readHeadInto(h, &hs, br, testLimits, "GET", ""); err != nil || len(h.Fields) != 9 {
			b.Fatalf("readHead = %+v, %v", h, err)
		}
	}
}

// BenchmarkReadHeadAlloc is readHead from scratch: a new Head and new
// parsing memory for every head.
func BenchmarkReadHeadAlloc(b *testing.B) {
	in := []byte(benchHead)
	rd := bytes.NewReader(in)
	br := bufio.NewReaderSize(rd, 4096)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(in)
		br.Reset(rd)
		h, err := readHead(br, testLimits, "GET", "")
		if err != nil || len(h.Fields) != 9 {
			b.Fatalf("readHead = %+v, %v", h, err)
		}
	}
}

// BenchmarkReadHeadStd is the reference: net/http's http.ReadResponse on the
// same head.
func BenchmarkReadHeadStd(b *testing.B) {
	in := []byte(benchHead)
	rd := bytes.NewReader(in)
	br := bufio.NewReaderSize(rd, 4096)
	req := &http.Request{Method: "GET"}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(in)
		br.Reset(rd)
		resp, err := http.ReadResponse(br, req)
		if err != nil || resp.ContentLength != 51 {
			b.Fatalf("ReadResponse = %+v, %v", resp, err)
		}
	}
}
