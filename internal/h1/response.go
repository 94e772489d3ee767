package h1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"
)

// response is the http.ResponseWriter of one request, reused by the
// connection's next one. It also implements http.Flusher and
// http.Hijacker.
//
// The head is written into the connection's buffer when WriteHeader is
// called (a later change to Header affects only trailers), and body bytes
// are buffered with it: a small response goes out in one write(2), when
// the handler returns, or at Flush.
type response struct {
	c   *conn
	st  *reqState
	req *http.Request
	hdr http.Header

	minor       int
	status      int
	wroteHeader bool
	isHead      bool
	noBody      bool // the status or method allows no body
	chunked     bool
	cl          int64 // declared Content-Length, or -1
	written     int64 // body bytes accepted
	handlerDone bool
	hijacked    bool
	continueOK  bool     // a 100 Continue may still be sent
	trailers    []string // names declared by the Trailer field
}

var (
	_ http.ResponseWriter = (*response)(nil)
	_ http.Flusher        = (*response)(nil)
	_ http.Hijacker       = (*response)(nil)
)

// reset prepares w for request r.
func (w *response) reset(r *http.Request) {
	clear(w.hdr)
	*w = response{c: w.c, st: w.st, req: r, hdr: w.hdr, minor: r.ProtoMinor, isHead: r.Method == http.MethodHead, cl: -1, continueOK: true, trailers: w.trailers[:0]}
}

// Header returns the response header map. Net/http's conventions hold: a
// key with a nil value is not sent (so "Content-Type": nil keeps any
// Content-Type away; none is ever sniffed), a key with the
// http.TrailerPrefix, or named by a Trailer field, set after WriteHeader
// is sent as a trailer field of a chunked response.
func (w *response) Header() http.Header { return w.hdr }

// WriteHeader writes the response head into the connection's buffer. 1xx
// statuses other than 101 are written (and flushed) at once, and do not
// count as the response's status.
func (w *response) WriteHeader(code int) {
	if w.hijacked || w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		w.informational(code)
		return
	}
	w.wroteHeader = true
	w.status = code
	w.continueOK = false
	w.writeHead()
}

// informational sends a 1xx head now (not to an HTTP/1.0 client, which
// would not understand it).
func (w *response) informational(code int) {
	if w.minor == 0 || w.c.werr != nil {
		return
	}
	if code == http.StatusContinue {
		if !w.continueOK {
			return
		}
		w.continueOK = false
		w.st.body.expect = false
	}
	c := w.c
	b := appendStatusLine(c.wbuf, w.minor, code)
	b = w.appendFields(b)
	c.wbuf = append(b, "\r\n"...)
	c.flush()
}

// writeHead decides the framing and the connection's fate, and appends the
// head to the connection's buffer.
func (w *response) writeHead() {
	c := w.c
	hdr := w.hdr
	code := w.status
	clv := ""
	if vs := hdr["Content-Length"]; len(vs) > 0 {
		v := strings.Trim(vs[0], " \t")
		if n, ok := parseDecimal([]byte(v)); ok {
			w.cl, clv = n, v
		}
	}
	switch {
	case code == http.StatusSwitchingProtocols:
		// Whatever follows is another protocol, on a hijacked connection
		// or none.
		w.noBody = true
		w.cl, clv = -1, ""
		c.closeAfter = true
	case code == http.StatusNoContent, code < 200:
		w.noBody = true
		w.cl, clv = -1, "" // RFC 9110 §8.6: never in a 1xx or 204
	case code == http.StatusNotModified, w.isHead:
		w.noBody = true // Content-Length, when given, describes the GET's body
	case w.cl >= 0:
	case w.handlerDone && w.written == 0:
		w.cl, clv = 0, "0"
	case w.minor >= 1:
		w.chunked = true
	default:
		c.closeAfter = true // HTTP/1.0: the body ends with the connection
	}
	if w.req.Close || c.s.shutdown.Load() || hasToken(hdr["Connection"], "close") {
		c.closeAfter = true
	}
	w.st.body.settle()
	b := appendStatusLine(c.wbuf, w.minor, code)
	b = w.appendFields(b)
	if _, ok := hdr["Date"]; !ok {
		b = appendDate(b, time.Now())
	}
	if clv != "" {
		b = append(b, "Content-Length: "...)
		b = append(b, clv...)
		b = append(b, "\r\n"...)
	}
	switch {
	case code == http.StatusSwitchingProtocols:
		for _, v := range hdr["Connection"] {
			b = appendField(b, "Connection", v)
		}
	case w.chunked:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
		fallthrough
	default:
		if c.closeAfter {
			b = append(b, "Connection: close\r\n"...)
		} else if w.minor == 0 {
			b = append(b, "Connection: keep-alive\r\n"...)
		}
	}
	c.wbuf = append(b, "\r\n"...)
	if w.chunked {
		for _, v := range hdr["Trailer"] {
			for name := range strings.SplitSeq(v, ",") {
				if name = strings.Trim(name, " \t"); name != "" {
					w.trailers = append(w.trailers, textproto.CanonicalMIMEHeaderKey(name))
				}
			}
		}
	}
}

// skipField lists the fields the server writes itself, or never.
func skipField(k string) bool {
	switch k {
	case "Content-Length", "Transfer-Encoding", "Connection", "Date":
		return true
	}
	return strings.HasPrefix(k, http.TrailerPrefix)
}

// appendFields appends the header fields in sorted order (Date only when
// the handler set one), as net/http writes them.
func (w *response) appendFields(b []byte) []byte {
	keys := w.st.keys[:0]
	for k, vs := range w.hdr {
		if len(vs) > 0 && (!skipField(k) || k == "Date") && validName(k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range w.hdr[k] {
			b = appendField(b, k, v)
		}
	}
	clear(keys)
	w.st.keys = keys[:0]
	return b
}

// appendField appends "name: value\r\n"; as net/http does, CR and LF in
// the value become spaces and surrounding whitespace is trimmed.
func appendField(b []byte, name, v string) []byte {
	b = append(b, name...)
	b = append(b, ": "...)
	v = strings.Trim(v, " \t")
	if strings.IndexByte(v, '\n') < 0 && strings.IndexByte(v, '\r') < 0 {
		b = append(b, v...)
	} else {
		for i := 0; i < len(v); i++ {
			c := v[i]
			if c == '\r' || c == '\n' {
				c = ' '
			}
			b = append(b, c)
		}
	}
	return append(b, "\r\n"...)
}

func validName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !tchars[k[i]] {
			return false
		}
	}
	return true
}

// hasToken reports whether the comma-separated values hold token,
// case-insensitively.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.Trim(tok, " \t"), token) {
				return true
			}
		}
	}
	return false
}

// appendStatusLine appends "HTTP/1.x code reason\r\n", answering in the
// request's version as net/http does.
func appendStatusLine(b []byte, minor, code int) []byte {
	if minor == 0 {
		b = append(b, "HTTP/1.0 "...)
	} else {
		b = append(b, "HTTP/1.1 "...)
	}
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	if text := http.StatusText(code); text != "" {
		b = append(b, text...)
	} else {
		b = append(b, "status code "...)
		b = strconv.AppendInt(b, int64(code), 10)
	}
	return append(b, "\r\n"...)
}

// Write writes body bytes, framed as the head said: chunked responses get
// one chunk per Write. Errors follow net/http: http.ErrBodyNotAllowed for
// a status without a body, http.ErrContentLength past the declared
// length, http.ErrHijacked after Hijack; writes to a HEAD response are
// accepted and dropped.
func (w *response) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if w.noBody {
		if w.isHead {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.cl >= 0 && w.written+int64(len(p)) > w.cl {
		return 0, http.ErrContentLength
	}
	c := w.c
	if c.werr != nil {
		return 0, c.werr
	}
	w.written += int64(len(p))
	if w.chunked {
		if err := w.writeChunk(p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if len(p) <= cap(c.wbuf)-len(c.wbuf) {
		c.wbuf = append(c.wbuf, p...)
		return len(p), nil
	}
	if err := c.writeBoth(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteString is Write for a string.
func (w *response) WriteString(s string) (int, error) {
	c := w.c
	if !w.wroteHeader && !w.hijacked {
		w.WriteHeader(http.StatusOK)
	}
	// What fits in the buffer is copied there without converting s.
	if !w.hijacked && w.wroteHeader && !w.noBody && c.werr == nil && len(s) > 0 &&
		len(s)+24 <= cap(c.wbuf)-len(c.wbuf) && (w.cl < 0 || w.written+int64(len(s)) <= w.cl) {
		w.written += int64(len(s))
		if w.chunked {
			c.wbuf = strconv.AppendUint(c.wbuf, uint64(len(s)), 16)
			c.wbuf = append(c.wbuf, "\r\n"...)
			c.wbuf = append(c.wbuf, s...)
			c.wbuf = append(c.wbuf, "\r\n"...)
		} else {
			c.wbuf = append(c.wbuf, s...)
		}
		return len(s), nil
	}
	return w.Write([]byte(s))
}

// writeChunk writes p as one chunk (RFC 9112 §7.1).
func (w *response) writeChunk(p []byte) error {
	c := w.c
	b := strconv.AppendUint(c.wbuf, uint64(len(p)), 16)
	b = append(b, "\r\n"...)
	if len(p)+2 <= cap(b)-len(b) {
		b = append(b, p...)
		c.wbuf = append(b, "\r\n"...)
		return nil
	}
	c.wbuf = b
	if err := c.writeBoth(p); err != nil {
		return err
	}
	c.wbuf = append(c.wbuf, "\r\n"...)
	return nil
}

// Flush sends what is buffered (the head first, writing a 200 head if
// none was written).
func (w *response) Flush() {
	if w.hijacked {
		return
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.c.flush()
}

// FlushError is Flush reporting the write's error (http.ResponseController).
func (w *response) FlushError() error {
	if w.hijacked {
		return http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.c.flush()
}

// Hijack hands the connection to the handler: what was written is sent
// first, and the returned reader holds the bytes already read after the
// request head. The server then never touches the connection again (it
// neither closes it nor counts it for Shutdown); its deadlines are
// cleared.
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c := w.c
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if w.handlerDone {
		return nil, nil, errors.New("h1: Hijack after the handler returned")
	}
	if err := c.flush(); err != nil {
		return nil, nil, err
	}
	c.stopWatch()
	w.hijacked = true
	c.hijacked = true
	c.s.untrack(c)
	c.nc.SetDeadline(time.Time{})
	pending := c.rbuf[c.r:c.w]
	br := bufio.NewReaderSize(&replayConn{Conn: c.nc, pending: bytes.Clone(pending)}, max(4096, len(pending)))
	if len(pending) > 0 {
		br.Peek(len(pending)) // the pending bytes move into br's buffer
	}
	c.r = c.w
	return c.nc, bufio.NewReadWriter(br, bufio.NewWriter(c.nc)), nil
}

// finish completes the response after the handler returned: a head if
// none was written, the last chunk and trailers, and the flush.
func (w *response) finish() {
	w.handlerDone = true
	if w.hijacked {
		return
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	c := w.c
	switch {
	case w.chunked:
		c.wbuf = w.appendTrailers(append(c.wbuf, "0\r\n"...))
		c.wbuf = append(c.wbuf, "\r\n"...)
	case w.cl >= 0 && !w.noBody && w.written < w.cl:
		c.closeAfter = true // short of its Content-Length: the client sees it cut off
	}
	c.flush()
}

// appendTrailers appends the trailer fields (RFC 9112 §7.1.2): values of
// the names the Trailer field declared, and keys with http.TrailerPrefix.
func (w *response) appendTrailers(b []byte) []byte {
	for _, name := range w.trailers {
		if validName(name) {
			for _, v := range w.hdr[name] {
				b = appendField(b, name, v)
			}
		}
	}
	keys := w.st.keys[:0]
	for k, vs := range w.hdr {
		if len(vs) > 0 && strings.HasPrefix(k, http.TrailerPrefix) {
			keys = append(keys, k)
		}
	}
	if len(keys) > 0 {
		slices.Sort(keys)
		for _, k := range keys {
			name := k[len(http.TrailerPrefix):]
			if !validName(name) {
				continue
			}
			for _, v := range w.hdr[k] {
				b = appendField(b, name, v)
			}
		}
		clear(keys)
	}
	w.st.keys = keys[:0]
	return b
}
