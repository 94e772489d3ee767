package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"candor/internal/failure"
	"candor/internal/respond"
	"candor/internal/telemetry"
	"candor/internal/upstream"
)

// Reject answers a request that the downstream server refused before
// routing (a malformed head, an invalid Host, ambiguous framing, a head or
// body over the limits, a timeout): fe's cause is rendered by package
// respond (problem+json, HTML or text per Accept) with the request id, and
// the refusal is logged once, counted in requests_total (source gateway,
// route and upstream "") and handed to the recent-failures recorder.
//
// r may be whatever the server had parsed when it gave up: its Method may
// be empty, its URL nil and its Header empty or nil; r itself may be nil.
// The method, host and path of the record are short sanitised excerpts
// (control characters, invalid UTF-8 and the like escaped as \xNN, at most
// [maxExcerpt] bytes each), never the raw bytes of the request. The peer
// recorded is r.RemoteAddr, the connection's address.
//
// A ClientCanceled fe (the client is gone) writes nothing, as everywhere
// else. Reject does not close the connection: the server, which refused the
// request, owns it and closes it after the response.
func (h *Handler) Reject(w http.ResponseWriter, r *http.Request, fe *failure.Error) {
	if fe == nil {
		fe = failure.New(failure.RequestMalformed, "")
	}
	var hdr http.Header
	ctx := context.Background()
	if r != nil {
		hdr = r.Header
		ctx = r.Context()
	}
	id := respond.RequestID(hdr)
	rec := telemetry.Record{Time: time.Now(), RequestID: id, Source: telemetry.SourceGateway}
	if r != nil {
		rec.Method = excerpt(r.Method)
		rec.Host = excerpt(r.Host)
		rec.Path = excerpt(h.rejectedPath(r))
		rec.Peer = excerpt(r.RemoteAddr)
	}
	rec.SetFailure(fe)
	rec.Detail = excerptN(rec.Detail, maxDetail)
	rec.Err = excerptN(rec.Err, maxDetail)
	// Nothing was routed: the metrics' route and upstream labels are "".
	rec.Route, rec.Upstream, rec.Target = "", "", ""
	rec.Status = fe.Kind.Status()
	rec.Log(ctx, h.log)
	if h.recorder != nil {
		h.recorder.Record(&rec)
	}
	if h.metrics != nil {
		h.metrics.Observe(&rec)
	}
	if r != nil && r.Header == nil {
		// respond reads the Accept and the method; a nil header reads as
		// empty, which is what it is.
		r = &http.Request{Method: r.Method, Header: http.Header{}}
	}
	respond.Problem(w, r, fe.Kind, id)
}

// rejectedPath is the path of a refused request for its record: the
// parsed URL's path when there is one, otherwise the raw target (which
// may be anything: the excerpt bounds and escapes it). The query is kept
// only when the handler logs queries.
func (h *Handler) rejectedPath(r *http.Request) string {
	if r.URL != nil {
		if h.query && r.URL.RawQuery != "" {
			return r.URL.Path + "?" + r.URL.RawQuery
		}
		return r.URL.Path
	}
	p := r.RequestURI
	if !h.query {
		if i := strings.IndexByte(p, '?'); i >= 0 {
			p = p[:i]
		}
	}
	return p
}

// maxExcerpt bounds each field of a refused request that goes into its
// record (bytes of input); maxDetail bounds the failure's detail and error
// text, which the server builds with [failure.Quote].
const (
	maxExcerpt = 128
	maxDetail  = 512
)

// excerpt returns s as a log-safe excerpt: cut to maxExcerpt bytes (with
// "..." appended when cut), with every byte that is not part of a
// printable UTF-8 character (controls, DEL, invalid UTF-8) written as
// \xNN, so that a hostile request cannot forge log lines or hide bytes. A
// string that needs neither is returned as it is, without allocating.
func excerpt(s string) string { return excerptN(s, maxExcerpt) }

// excerptN is excerpt with a bound of max bytes.
func excerptN(s string, max int) string {
	cut := len(s) > max
	if cut {
		s = s[:max]
	}
	clean := true
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || c < 0x20 || c == 0x7f || !strconv.IsPrint(r) {
			clean = false
			break
		}
		i += n
	}
	if clean && !cut {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			b.WriteByte(c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r != utf8.RuneError && c >= 0x20 && c != 0x7f && strconv.IsPrint(r) {
			b.WriteString(s[i : i+n])
			i += n
			continue
		}
		const hex = "0123456789abcdef"
		b.WriteString(`\x`)
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
		i++
	}
	if cut {
		b.WriteString("...")
	}
	return b.String()
}

// Forwarding fields.
//
// candor tells the upstream who the client is in X-Forwarded-For,
// X-Forwarded-Proto, X-Forwarded-Host and Forwarded (RFC 7239). When the
// peer (the address of the connection the request came on) is inside one of
// the configured trusted_proxies networks, the client's fields are kept and
// candor adds its hop: the peer's address is appended to X-Forwarded-For,
// an element "for=peer;proto=...;host=..." is appended to Forwarded, and
// X-Forwarded-Proto and X-Forwarded-Host are kept when present (the proxy in
// front knows the original scheme and host) and set otherwise. From any
// other peer, the client's values are dropped and candor sets its own, with
// the peer as the client. Either way, logs record the peer, never an address
// taken from these fields, which a trusted proxy might itself have been
// handed by its client.
//
// Spellings of these names with underscores (X_Forwarded_For, which CGI
// and WSGI servers read as X-Forwarded-For) and X-Real-Ip are never
// forwarded (see package upstream).

// forwarding appends candor's forwarding fields for request r to extra.
func forwarding(extra []upstream.Field, r *http.Request, trusted []netip.Prefix) []upstream.Field {
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	// The peer's address without its port and zone; the whole RemoteAddr
	// when it is not ip:port (it always is for TCP).
	peer, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		peer = r.RemoteAddr
	}
	peer, _, _ = strings.Cut(peer, "%")
	ip, _ := netip.ParseAddr(peer)
	ip = ip.Unmap()

	xff, xfp, xfh := peer, proto, r.Host
	fwd := forwardedElement(ip, proto, r.Host)
	if isTrusted(ip, trusted) {
		if v := joined(r.Header["X-Forwarded-For"]); v != "" {
			xff = v + ", " + peer
		}
		if v := joined(r.Header["X-Forwarded-Proto"]); v != "" {
			xfp = v
		}
		if v := joined(r.Header["X-Forwarded-Host"]); v != "" {
			xfh = v
		}
		if v := joined(r.Header["Forwarded"]); v != "" {
			fwd = v + ", " + fwd
		}
	}
	// An empty value is not sent, but still keeps the client's field of
	// that name out (upstream.Request.Extra): an HTTP/1.0 request without
	// Host has no X-Forwarded-Host.
	return append(extra,
		upstream.Field{Name: "X-Forwarded-For", Value: xff},
		upstream.Field{Name: "X-Forwarded-Proto", Value: xfp},
		upstream.Field{Name: "X-Forwarded-Host", Value: xfh},
		upstream.Field{Name: "Forwarded", Value: fwd},
	)
}

// joined returns the field lines vs as one list value (RFC 9110 §5.3),
// without its empty lines.
func joined(vs []string) string {
	if len(vs) == 1 {
		return vs[0]
	}
	var b strings.Builder
	for _, v := range vs {
		if v == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(v)
	}
	return b.String()
}

// isTrusted reports whether ip is inside one of the trusted networks.
func isTrusted(ip netip.Addr, trusted []netip.Prefix) bool {
	if !ip.IsValid() {
		return false
	}
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// forwardedElement returns candor's Forwarded element (RFC 7239 §4):
// for=peer;proto=...;host=... . An IPv6 peer is quoted with brackets
// (`for="[2001:db8::1]"`, §6), an address that is not an IP is "unknown"
// (§6.2); host is a token when it can be, a quoted-string otherwise (it
// usually has a port, and ':' is not a token character), and left out when
// empty or when it holds a byte a quoted-string cannot.
func forwardedElement(ip netip.Addr, proto, host string) string {
	var b strings.Builder
	b.Grow(64 + len(host))
	b.WriteString("for=")
	var text [48]byte // an address's text, on the stack
	switch {
	case ip.Is4():
		b.Write(ip.AppendTo(text[:0]))
	case ip.Is6():
		b.WriteString(`"[`)
		b.Write(ip.AppendTo(text[:0]))
		b.WriteString(`]"`)
	default:
		b.WriteString("unknown")
	}
	b.WriteString(";proto=")
	b.WriteString(proto)
	if host != "" && quotable(host) {
		b.WriteString(";host=")
		if isToken(host) {
			b.WriteString(host)
		} else {
			b.WriteByte('"')
			for i := 0; i < len(host); i++ {
				if c := host[i]; c == '"' || c == '\\' {
					b.WriteByte('\\')
				}
				b.WriteByte(host[i])
			}
			b.WriteByte('"')
		}
	}
	return b.String()
}

// quotable reports whether s fits in a quoted-string (RFC 9110 §5.6.4):
// HTAB, SP, visible ASCII and obs-text, with '"' and '\' escaped.
func quotable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// Client request bodies.

// clientBody reads the client's request body for the upstream request. It
// enforces the route's max_body on bodies of unknown length (chunked, or
// HTTP/2 without content-length; a declared Content-Length over the limit
// is refused before any of the body is read), and turns every read error
// into the client's cause: a client body that breaks is the client's
// fault, never a 502 and never held against the upstream.
type clientBody struct {
	r   io.Reader
	ctx context.Context
	// limit is max_body, 0 for none; left is what may still be read.
	limit, left int64
	// err is the sticky failure, once there is one.
	err *failure.Error
}

// Read reads from the client's body; its errors are *failure.Error.
func (b *clientBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.limit > 0 && int64(len(p)) > b.left {
		// One byte past the limit tells a body of exactly max_body from a
		// larger one.
		p = p[:b.left+1]
	}
	n, err := b.r.Read(p)
	if b.limit > 0 {
		b.left -= int64(n)
		if b.left < 0 {
			b.err = failure.New(failure.RequestBodyTooLarge, "request body larger than the route's max_body ("+strconv.FormatInt(b.limit, 10)+" bytes)")
			return n - 1, b.err
		}
	}
	if err != nil && err != io.EOF {
		b.err = clientBodyFailure(b.ctx, err)
		return n, b.err
	}
	return n, err
}

// clientBodyFailure classifies an error reading the client's request body.
// The downstream server's body reader returns a *failure.Error with the
// exact cause (client_body_invalid for broken chunking, request_timeout for
// a stalled body, client_canceled for a client that closed mid-body), which
// is taken as it is. Other readers' errors (net/http's server, an HTTP/2
// stream) are mapped: the request's context canceled or the connection
// closed or reset mid-body is client_canceled, a timeout request_timeout, a
// MaxBytesReader's limit request_body_too_large, anything else (malformed
// chunking) client_body_invalid.
func clientBodyFailure(ctx context.Context, err error) *failure.Error {
	if fe, ok := errors.AsType[*failure.Error](err); ok {
		return fe
	}
	const detail = "reading the request body"
	switch {
	case ctx != nil && errors.Is(ctx.Err(), context.Canceled):
		return failure.Wrap(failure.ClientCanceled, detail, err)
	case isTimeout(err):
		return failure.Wrap(failure.RequestTimeout, detail, err)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return failure.Wrap(failure.ClientCanceled, detail, err)
	}
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return failure.Wrap(failure.RequestBodyTooLarge, detail, err)
	}
	return failure.Wrap(failure.ClientBodyInvalid, detail, err)
}

// isTimeout reports whether err is a timeout.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}

// closeAfter is a ResponseWriter that asks the server to close the
// connection after the response: a request refused with part of its body
// unread leaves the connection in a state candor does not read on from.
type closeAfter struct{ http.ResponseWriter }

func (w closeAfter) WriteHeader(status int) {
	w.Header().Set("Connection", "close")
	w.ResponseWriter.WriteHeader(status)
}
