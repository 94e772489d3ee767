package fault

import (
	"bufio"
	"errors"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// request is a parsed request head plus what dispatch needs.
type request struct {
	Received
	path      string // the target's path, undecoded, without the query
	query     url.Values
	keepAlive bool
}

// badRequest is a request the fake upstream refuses: it answers status with
// msg and closes the connection.
type badRequest struct {
	status int
	msg    string
}

func (e *badRequest) Error() string { return strconv.Itoa(e.status) + " " + e.msg }

func bad(status int, msg string) error { return &badRequest{status: status, msg: msg} }

// tlsHandshakeByte is the first byte of a TLS handshake record (RFC 8446
// §5.1, ContentType handshake(22)).
const tlsHandshakeByte = 0x16

// readRequest reads one request head (RFC 9112 §2.1, §3, §5) and its body,
// leniently: the fake upstream must see what a gateway sends, not police it,
// so it accepts bare LF line ends and any field name without a colon problem.
func (c *conn) readRequest() (*request, error) {
	if c.idle > 0 {
		_ = c.c.SetReadDeadline(time.Now().Add(c.idle))
	}
	first, err := c.br.Peek(1)
	_ = c.c.SetReadDeadline(time.Time{})
	if err != nil {
		return nil, err
	}
	if c.tls == nil && first[0] == tlsHandshakeByte {
		return nil, bad(400, "Client sent a TLS handshake to a plaintext HTTP server.")
	}

	budget := maxHeadBytes
	var line string
	// RFC 9112 §2.2: a server SHOULD ignore at least one empty line received
	// before the request-line. The budget bounds the loop.
	for line == "" {
		if line, err = c.readLine(&budget); err != nil {
			return nil, err
		}
	}
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || method == "" || target == "" || !strings.HasPrefix(proto, "HTTP/1.") {
		return nil, bad(400, "malformed request line")
	}
	r := &request{Received: Received{Method: method, Target: target, Proto: proto}}
	for {
		line, err := c.readLine(&budget)
		if err != nil {
			return nil, err
		}
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" {
			return nil, bad(400, "malformed header field")
		}
		r.Header = append(r.Header, [2]string{name, strings.Trim(value, " \t")})
	}
	c.s.requests.Add(1)

	r.path, r.query = splitTarget(target)
	r.keepAlive = proto == "HTTP/1.1" && !r.hasToken("Connection", "close")
	if err := c.readBody(r); err != nil {
		return nil, err
	}
	return r, nil
}

// readLine reads one line ending in LF, strips CRLF or LF, and charges it to
// budget.
func (c *conn) readLine(budget *int) (string, error) {
	var b []byte
	for {
		frag, err := c.br.ReadSlice('\n')
		if len(frag) > *budget {
			return "", bad(431, "request head too large")
		}
		*budget -= len(frag)
		b = append(b, frag...)
		switch {
		case err == nil:
			b = b[:len(b)-1]
			if n := len(b); n > 0 && b[n-1] == '\r' {
				b = b[:n-1]
			}
			return string(b), nil
		case !errors.Is(err, bufio.ErrBufferFull):
			return "", err
		}
	}
}

// readBody reads and discards the request body, keeping its first
// keepBodyBytes in r.Body (RFC 9112 §6.3: chunked, else Content-Length, else
// none).
func (c *conn) readBody(r *request) error {
	te := r.values("Transfer-Encoding")
	cl := r.values("Content-Length")
	var n int64 = -1
	switch {
	case len(te) > 0 && len(cl) > 0:
		return bad(400, "both Transfer-Encoding and Content-Length")
	case len(te) > 0:
		if len(te) != 1 || !strings.EqualFold(te[0], "chunked") {
			return bad(501, "unsupported Transfer-Encoding")
		}
	case len(cl) > 0:
		for _, v := range cl {
			m, err := strconv.ParseInt(v, 10, 64)
			if err != nil || m < 0 || (n >= 0 && m != n) || v[0] == '+' {
				return bad(400, "invalid Content-Length")
			}
			n = m
		}
		if n > maxBodyBytes {
			return bad(413, "request body too large")
		}
	default:
		return nil
	}
	if r.hasToken("Expect", "100-continue") {
		if _, err := io.WriteString(c.bw, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
			return err
		}
		if err := c.bw.Flush(); err != nil {
			return err
		}
	}
	if n >= 0 {
		return c.readBodyBytes(r, n)
	}
	return c.readChunked(r)
}

func (c *conn) readBodyBytes(r *request, n int64) error {
	if r.BodyLen+n > maxBodyBytes {
		return bad(413, "request body too large")
	}
	if keep := min(n, keepBodyBytes-int64(len(r.Body))); keep > 0 {
		start := len(r.Body)
		r.Body = append(r.Body, make([]byte, keep)...)
		if _, err := io.ReadFull(c.br, r.Body[start:]); err != nil {
			return err
		}
		n -= keep
		r.BodyLen += keep
	}
	m, err := io.CopyN(io.Discard, c.br, n)
	r.BodyLen += m
	return err
}

// readChunked decodes a chunked body (RFC 9112 §7.1), ignoring chunk
// extensions and trailer fields.
func (c *conn) readChunked(r *request) error {
	budget := maxHeadBytes // chunk-size lines and trailers
	for {
		line, err := c.readLine(&budget)
		if err != nil {
			return err
		}
		size, _, _ := strings.Cut(line, ";")
		n, err := strconv.ParseInt(strings.TrimRight(size, " \t"), 16, 64)
		if err != nil || n < 0 {
			return bad(400, "malformed chunk size")
		}
		if n == 0 {
			break
		}
		if err := c.readBodyBytes(r, n); err != nil {
			return err
		}
		line, err = c.readLine(&budget)
		if err != nil {
			return err
		}
		if line != "" {
			return bad(400, "malformed chunk data")
		}
	}
	for {
		line, err := c.readLine(&budget)
		if err != nil || line == "" {
			return err
		}
	}
}

// values returns the values of every field called name (case-insensitive).
func (r *request) values(name string) []string {
	var vs []string
	for _, f := range r.Header {
		if strings.EqualFold(f[0], name) {
			vs = append(vs, f[1])
		}
	}
	return vs
}

// hasToken reports whether a comma-separated field called name contains
// token (case-insensitive).
func (r *request) hasToken(name, token string) bool {
	for _, v := range r.values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// duration returns the query parameter key as milliseconds, or def if it is
// absent or invalid.
func (r *request) duration(key string, def time.Duration) time.Duration {
	ms, err := strconv.ParseInt(r.query.Get(key), 10, 64)
	if err != nil || ms < 0 {
		return def
	}
	return time.Duration(min(ms, int64(MaxStall/time.Millisecond))) * time.Millisecond
}

// number returns the query parameter key, or def if it is absent or invalid,
// clamped to [0, limit].
func (r *request) number(key string, def, limit int64) int64 {
	n, err := strconv.ParseInt(r.query.Get(key), 10, 64)
	if err != nil || n < 0 {
		n = def
	}
	return min(n, limit)
}

// splitTarget returns the path and query of a request target in origin-form
// or absolute-form (RFC 9112 §3.2).
func splitTarget(target string) (string, url.Values) {
	if !strings.HasPrefix(target, "/") {
		if u, err := url.Parse(target); err == nil && u.Host != "" {
			target = u.RequestURI()
		}
	}
	p, rawQuery, _ := strings.Cut(target, "?")
	q, _ := url.ParseQuery(rawQuery)
	return p, q
}
