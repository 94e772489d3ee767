package hardening_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Limits of the recording upstream. Every read and write has a deadline, so
// that a gateway that stops talking cannot hang a test.
const (
	// upIdle bounds the wait for each request (and each piece of it) on an
	// upstream connection.
	upIdle = 10 * time.Second
	// upWrite bounds the write of one response.
	upWrite = 5 * time.Second
	// upMaxLine bounds one line of a request head or chunked body.
	upMaxLine = 64 << 10
	// upMaxFields bounds the fields of one head (or trailer section).
	upMaxFields = 1000
	// upMaxBody bounds a request body.
	upMaxBody = 1 << 20
)

// field is one field line: the name as sent and the value without its
// surrounding whitespace.
type field struct{ name, value string }

func (f field) String() string { return f.name + ": " + f.value }

// received is one complete request exactly as the recording upstream read
// it from the gateway.
type received struct {
	seq     int // the X-Seq of the upstream's answer
	method  string
	target  string
	version string
	fields  []field // in the order received
	// framing is "none", "length" or "chunked": how the gateway framed
	// the body it sent.
	framing  string
	body     []byte // decoded
	trailers []field
}

func (r received) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s [%s]", r.method, r.target, r.version, r.framing)
	for _, f := range r.fields {
		fmt.Fprintf(&b, "\n\t%q", f.String())
	}
	if len(r.trailers) > 0 {
		fmt.Fprintf(&b, "\n\ttrailers %q", r.trailers)
	}
	fmt.Fprintf(&b, "\n\tbody %q", r.body)
	return b.String()
}

// upstream is the strict recording upstream: a raw HTTP/1.1 server on
// 127.0.0.1 that parses each request strictly (RFC 9112: request line,
// field lines, Content-Length or chunked body, no bare CR or LF, no
// obs-fold, one framing, one Host), records it, and answers a fixed small
// 200 with Content-Length on a keep-alive connection. Its answer carries
// X-Seq, the request's number, so that a client of the gateway can tell
// which upstream request a response belongs to.
//
// Anything it cannot parse strictly is a violation: the gateway sent the
// upstream something ambiguous. A connection that ends in the middle of a
// request counts as a partial request, never as a request.
//
// It is written here rather than taken from package fault, whose upstream
// reads requests leniently on purpose (bare LF, any Transfer-Encoding
// case), or from net/http, whose server is lenient too and does not keep
// fields in order: a proof against smuggling needs an upstream that
// refuses everything ambiguous and records bytes as they came.
type upstream struct {
	ln net.Listener
	wg sync.WaitGroup

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	// busy counts connections in the middle of a request; changed is
	// signalled whenever it goes down.
	busy       int
	changed    chan struct{}
	seq        int
	reqs       []received
	partial    int
	violations []string
}

// startUpstream starts a recording upstream, closed at the end of the test.
func startUpstream(tb testing.TB) *upstream {
	tb.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	u := &upstream{ln: ln, conns: map[net.Conn]struct{}{}, changed: make(chan struct{}, 1)}
	u.wg.Go(u.accept)
	tb.Cleanup(u.close)
	return u
}

func (u *upstream) url() string { return "http://" + u.ln.Addr().String() }

func (u *upstream) close() {
	_ = u.ln.Close()
	u.mu.Lock()
	u.closed = true
	for c := range u.conns {
		_ = c.Close()
	}
	u.mu.Unlock()
	u.wg.Wait()
}

func (u *upstream) accept() {
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		u.mu.Lock()
		if u.closed {
			u.mu.Unlock()
			_ = c.Close()
			return
		}
		u.conns[c] = struct{}{}
		u.mu.Unlock()
		u.wg.Go(func() {
			defer func() {
				u.mu.Lock()
				delete(u.conns, c)
				u.mu.Unlock()
				_ = c.Close()
			}()
			u.serve(c)
		})
	}
}

// take returns what the upstream recorded since the last take and forgets
// it.
func (u *upstream) take() (reqs []received, partial int, violations []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	reqs, partial, violations = u.reqs, u.partial, u.violations
	u.reqs, u.partial, u.violations = nil, 0, nil
	return
}

// waitIdle waits up to d until no connection is in the middle of a
// request, and reports whether that happened.
func (u *upstream) waitIdle(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		u.mu.Lock()
		busy := u.busy
		u.mu.Unlock()
		if busy == 0 {
			return true
		}
		select {
		case <-u.changed:
		case <-timer.C:
			return false
		}
	}
}

// errViolation marks bytes from the gateway that a strict HTTP/1.1 server
// must refuse.
type errViolation struct{ why string }

func (e errViolation) Error() string { return e.why }

func violation(format string, a ...any) error {
	return errViolation{fmt.Sprintf(format, a...)}
}

// serve reads requests on one connection until it ends.
func (u *upstream) serve(c net.Conn) {
	br := bufio.NewReaderSize(c, 4<<10)
	for {
		_ = c.SetReadDeadline(time.Now().Add(upIdle))
		if _, err := br.Peek(1); err != nil {
			return // closed between requests: normal
		}
		u.mu.Lock()
		u.busy++
		u.mu.Unlock()
		r, err := readStrict(c, br)
		// The outcome is recorded in the same critical section that ends
		// busy, so that waitIdle never sees a request half-recorded.
		v, isViolation := errors.AsType[errViolation](err)
		u.mu.Lock()
		u.busy--
		switch {
		case isViolation:
			u.violations = append(u.violations, v.why)
		case err != nil:
			u.partial++
		default:
			u.seq++
			r.seq = u.seq
			u.reqs = append(u.reqs, *r)
		}
		u.mu.Unlock()
		select {
		case u.changed <- struct{}{}:
		default:
		}
		if isViolation {
			_ = c.SetWriteDeadline(time.Now().Add(upWrite))
			_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		}
		if err != nil {
			return
		}

		closing := hasToken(values(r.fields, "Connection"), "close")
		var resp bytes.Buffer
		resp.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Seq: ")
		resp.WriteString(strconv.Itoa(r.seq))
		resp.WriteString("\r\nContent-Length: 2\r\n")
		if closing {
			resp.WriteString("Connection: close\r\n")
		}
		resp.WriteString("\r\n")
		if r.method != "HEAD" {
			resp.WriteString("ok")
		}
		_ = c.SetWriteDeadline(time.Now().Add(upWrite))
		if _, err := c.Write(resp.Bytes()); err != nil || closing {
			return
		}
	}
}

// readStrict reads one request. Each line and piece of body is read under
// a fresh deadline.
func readStrict(c net.Conn, br *bufio.Reader) (*received, error) {
	line, err := strictLine(c, br)
	if err != nil {
		return nil, err
	}
	parts := strings.Split(line, " ")
	if len(parts) != 3 {
		return nil, violation("request line %q: not three parts separated by single spaces", line)
	}
	r := &received{method: parts[0], target: parts[1], version: parts[2]}
	if !isToken(r.method) {
		return nil, violation("request line %q: method is not a token", line)
	}
	if r.target == "" || !visible(r.target) {
		return nil, violation("request line %q: invalid target", line)
	}
	if r.version != "HTTP/1.1" {
		return nil, violation("request line %q: version is not HTTP/1.1", line)
	}
	if r.fields, err = strictFields(c, br); err != nil {
		return nil, err
	}
	if n := len(values(r.fields, "Host")); n != 1 {
		return nil, violation("%d Host fields", n)
	}
	te, cl := values(r.fields, "Transfer-Encoding"), values(r.fields, "Content-Length")
	switch {
	case len(te) > 0 && len(cl) > 0:
		return nil, violation("both Transfer-Encoding and Content-Length")
	case len(te) > 0:
		if len(te) != 1 || te[0] != "chunked" {
			return nil, violation("Transfer-Encoding %q", te)
		}
		r.framing = "chunked"
		err = readChunked(c, br, r)
	case len(cl) > 0:
		if len(cl) != 1 || !digits(cl[0]) || len(cl[0]) > 18 {
			return nil, violation("Content-Length %q", cl)
		}
		n, _ := strconv.ParseInt(cl[0], 10, 64)
		if n > upMaxBody {
			return nil, violation("Content-Length %d over the upstream's limit", n)
		}
		r.framing = "length"
		r.body = make([]byte, n)
		_ = c.SetReadDeadline(time.Now().Add(upIdle))
		_, err = io.ReadFull(br, r.body)
	default:
		r.framing = "none"
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

// strictLine reads one line that must end in CRLF and hold no other CR or
// LF.
func strictLine(c net.Conn, br *bufio.Reader) (string, error) {
	var b []byte
	for {
		_ = c.SetReadDeadline(time.Now().Add(upIdle))
		frag, err := br.ReadSlice('\n')
		b = append(b, frag...)
		if len(b) > upMaxLine {
			return "", violation("line longer than %d bytes", upMaxLine)
		}
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
	}
	if len(b) < 2 || b[len(b)-2] != '\r' {
		return "", violation("bare LF in %q", b)
	}
	b = b[:len(b)-2]
	if bytes.IndexByte(b, '\r') >= 0 {
		return "", violation("bare CR in %q", b)
	}
	return string(b), nil
}

// strictFields reads field lines up to the empty line (RFC 9112 §5).
func strictFields(c net.Conn, br *bufio.Reader) ([]field, error) {
	var fields []field
	for {
		line, err := strictLine(c, br)
		if err != nil {
			return nil, err
		}
		if line == "" {
			return fields, nil
		}
		if len(fields) == upMaxFields {
			return nil, violation("more than %d fields", upMaxFields)
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !isToken(name) {
			return nil, violation("field line %q", line)
		}
		value = strings.Trim(value, " \t")
		if !fieldValue(value) {
			return nil, violation("field value %q", line)
		}
		fields = append(fields, field{name, value})
	}
}

// readChunked decodes a chunked body (RFC 9112 §7.1) strictly: 1 to 16 hex
// digits, no extensions (candor sends none), CRLF after each chunk's data,
// trailer fields parsed like header fields.
func readChunked(c net.Conn, br *bufio.Reader, r *received) error {
	r.body = []byte{}
	for {
		line, err := strictLine(c, br)
		if err != nil {
			return err
		}
		if line == "" || len(line) > 16 || strings.Trim(line, "0123456789abcdefABCDEF") != "" {
			return violation("chunk size line %q", line)
		}
		n, _ := strconv.ParseUint(line, 16, 64)
		if n == 0 {
			r.trailers, err = strictFields(c, br)
			return err
		}
		if n > upMaxBody || uint64(len(r.body))+n > upMaxBody {
			return violation("chunked body over the upstream's limit")
		}
		start := len(r.body)
		r.body = append(r.body, make([]byte, n)...)
		_ = c.SetReadDeadline(time.Now().Add(upIdle))
		if _, err := io.ReadFull(br, r.body[start:]); err != nil {
			return err
		}
		if line, err := strictLine(c, br); err != nil {
			return err
		} else if line != "" {
			return violation("chunk data not followed by CRLF")
		}
	}
}

// isToken reports whether s is a token (RFC 9110 §5.6.2).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tchar(s[i]) {
			return false
		}
	}
	return true
}

func tchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// visible reports whether s holds only bytes 0x21-0x7E.
func visible(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// fieldValue reports whether s is a valid field value: HTAB, SP, VCHAR and
// obs-text only (RFC 9110 §5.5).
func fieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// values returns the values of the fields called name, case-insensitively.
func values(fields []field, name string) []string {
	var vs []string
	for _, f := range fields {
		if strings.EqualFold(f.name, name) {
			vs = append(vs, f.value)
		}
	}
	return vs
}

// hasToken reports whether a comma-separated list in vs holds token,
// case-insensitively.
func hasToken(vs []string, token string) bool {
	for _, v := range vs {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.Trim(t, " \t"), token) {
				return true
			}
		}
	}
	return false
}
