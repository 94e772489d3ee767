package respond

import (
	"io"
	"net/http"
	"strconv"

	"candor/internal/failure"
)

// contentSecurityPolicy goes with the HTML page: it may use its inline style
// and nothing else, so even a rendering bug cannot run a script.
const contentSecurityPolicy = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// renderBufSize is the stack buffer Problem renders into. The largest body,
// an HTML page with a 128-byte request id, is about 1.2 KB; a body that does
// not fit still renders correctly, at the cost of one more allocation.
const renderBufSize = 2048

// Problem writes candor's error response for cause k to w, for request r,
// with request id requestID. It must be called before anything has been
// written to w, and requestID should come from [RequestID] (it is escaped
// anyway). An empty requestID is replaced by [NewRequestID]'s, so that the
// response always carries an id.
//
// The status is k.Status(). The exception is a cause whose status is
// [failure.StatusClientClosed] (499, [failure.ClientCanceled]): the client
// is gone and 499 is not an HTTP status to send, so Problem writes nothing at
// all and leaves w untouched; record the 499 in logs and metrics only.
//
// The body is [Render]'s, in the format [Negotiate] picks from r's Accept
// header. For a HEAD request Problem sends the same header fields, including
// the Content-Length of the body a GET would get, and no body (RFC 9110
// §9.3.2).
//
// Problem first deletes every field already set in w.Header(): the proxy may
// have copied an upstream's header fields before the attempt failed, and
// none of them (Set-Cookie, Content-Encoding, Content-Length, Location,
// an upstream's Server or Via...) may leak into, or contradict, candor's own
// response. The X-Request-Id field is then set to requestID, so the request
// id a handler set survives as long as it is the one passed here. The
// response then carries exactly:
//
//	Content-Type: application/problem+json | text/html; charset=utf-8 | text/plain; charset=utf-8
//	Content-Length: <body length>
//	Cache-Control: no-store
//	X-Content-Type-Options: nosniff
//	X-Request-Id: <requestID>
//	Vary: Accept                         (the body depends on Accept, RFC 9110 §12.5.5)
//	Retry-After: <seconds>               (when the cause's row has RetryAfter > 0)
//	Content-Security-Policy: ...         (HTML only; inline style and nothing else)
//
// Problem allocates twice (the body with the Content-Length and Retry-After
// values, and the header value slices), plus whatever the first insertions
// into a new header map cost.
func Problem(w http.ResponseWriter, r *http.Request, k failure.Kind, requestID string) {
	row := k.Row()
	if row.Status == failure.StatusClientClosed {
		return
	}
	if requestID == "" {
		requestID = NewRequestID()
	}
	f := FormatJSON
	head := false
	if r != nil {
		f = Negotiate(r.Header)
		head = r.Method == http.MethodHead
	}

	// One string holds the body followed by the digits of Content-Length
	// and Retry-After; the header values are substrings of it.
	var stack [renderBufSize]byte
	b := Render(stack[:0], k, f, requestID)
	n := len(b)
	b = strconv.AppendInt(b, int64(n), 10)
	m := len(b)
	if row.RetryAfter > 0 {
		b = strconv.AppendInt(b, int64(row.RetryAfter), 10)
	}
	all := string(b)
	body := all[:n]

	h := w.Header()
	clear(h)
	// One backing array for all header values. Each value is a full slice
	// expression of length and capacity 1, so a later h.Add appends to a
	// copy rather than into its neighbour.
	vals := make([]string, 8)
	set := func(i int, name, value string) {
		vals[i] = value
		h[name] = vals[i : i+1 : i+1]
	}
	set(0, "Content-Type", f.ContentType())
	set(1, "Content-Length", all[n:m])
	set(2, "Cache-Control", "no-store")
	set(3, "X-Content-Type-Options", "nosniff")
	set(4, HeaderRequestID, requestID)
	set(5, "Vary", "Accept")
	if row.RetryAfter > 0 {
		set(6, "Retry-After", all[m:])
	}
	if f == FormatHTML {
		set(7, "Content-Security-Policy", contentSecurityPolicy)
	}
	w.WriteHeader(row.Status)
	if !head {
		io.WriteString(w, body)
	}
}
