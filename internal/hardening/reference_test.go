package hardening_test

import (
	"bytes"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The reference is candor's request decision table written as a plain,
// slow parser of a client's byte stream: the oracle of FuzzGateway. It
// splits the stream into requests the way the table says and tells, for
// each, whether the table accepts it (and then exactly what the upstream
// must receive) or refuses it.
//
// Where the table leaves a choice open, the reference accepts: the fuzz
// test only flags a gateway that forwards what the table refuses, or that
// forwards something in another shape, and a gateway refusing more than
// the reference is never flagged. The open points are listed where they
// are decided (search for "open:").

// refLimits are the server limits the reference applies.
type refLimits struct {
	maxLine, maxHeaderBytes, maxFields int
}

// refReq is one request the table accepts.
type refReq struct {
	method string
	// target is what the upstream must receive: the target as sent in
	// origin-form (or "*"), the path and query of an absolute-form one.
	target   string
	absolute bool
	// host is the Host the upstream must receive: the authority of an
	// absolute-form target, else the Host field ("" for HTTP/1.0
	// without one).
	host   string
	fields []field
	body   []byte
	// closes: the connection ends after this request (Connection: close,
	// or HTTP/1.0 without keep-alive).
	closes bool
}

// refEnd says why the reference stopped.
type refEnd int

const (
	endData       refEnd = iota // every byte was consumed
	endIncomplete               // the stream ends inside a request
	endRefused                  // the table refuses a request
	endClosed                   // a request closes the connection
)

func (e refEnd) String() string {
	return [...]string{"end of data", "incomplete request", "refused request", "connection closed"}[e]
}

// refResult is the reference's reading of a stream.
type refResult struct {
	reqs []refReq
	end  refEnd
	// cause is the refused request's cause id; method is its method when
	// the request line was read (to read its response).
	cause, method string
}

// refusal is a refused request inside the reference.
type refusal struct{ cause string }

const (
	cMalformed   = "request_malformed"
	cHost        = "request_host_invalid"
	cFraming     = "request_framing_invalid"
	cCoding      = "request_transfer_coding_unsupported"
	cBody        = "client_body_invalid"
	cLineTooLong = "request_line_too_long"
	cHeaderLarge = "request_header_too_large"
	cVersion     = "request_version_not_supported"
	cMethod      = "request_method_not_supported"
)

// maxChunkLine bounds a chunk-size line (size and extensions).
const maxChunkLine = 4096

// reference reads data as the decision table does.
func reference(data []byte, lim refLimits) refResult {
	var res refResult
	p := data
	for range len(data) + 1 { // each round consumes at least one byte
		if len(p) == 0 {
			res.end = endData
			return res
		}
		rp := &refParser{p: p, lim: lim}
		r, n, err := rp.request()
		switch {
		case err == errIncomplete:
			res.end = endIncomplete
			return res
		case err != nil:
			res.end, res.cause, res.method = endRefused, err.(*refusal).cause, rp.method
			return res
		}
		res.reqs = append(res.reqs, *r)
		p = p[n:]
		if r.closes {
			res.end = endClosed
			return res
		}
	}
	panic("unreachable: the reference did not consume its input")
}

func (r *refusal) Error() string { return r.cause }

// errIncomplete: the data ends inside the request.
var errIncomplete = &refusal{"incomplete"}

func refuse(cause string) error { return &refusal{cause} }

type refParser struct {
	p      []byte
	i      int
	lim    refLimits
	method string
}

// line returns the next line without its CRLF. A line ending in a bare LF
// is malformed (candor accepts CRLF only); if no LF comes within max bytes
// the line is refused with tooLong, and a stream that ends first is
// incomplete.
func (rp *refParser) line(max int, tooLong string) ([]byte, error) {
	rest := rp.p[rp.i:]
	lf := bytes.IndexByte(rest, '\n')
	if lf < 0 {
		if len(rest) > max+1 {
			return nil, refuse(tooLong)
		}
		return nil, errIncomplete
	}
	if lf == 0 || rest[lf-1] != '\r' {
		return nil, refuse(cMalformed)
	}
	line := rest[:lf-1]
	if len(line) > max {
		return nil, refuse(tooLong)
	}
	rp.i += lf + 1
	return line, nil
}

func (rp *refParser) request() (*refReq, int, error) {
	// RFC 9112 §2.2: up to 8 empty lines before the request line.
	for n := 0; ; n++ {
		rest := rp.p[rp.i:]
		if len(rest) == 0 || len(rest) == 1 && rest[0] == '\r' {
			return nil, 0, errIncomplete
		}
		if rest[0] == '\n' {
			return nil, 0, refuse(cMalformed)
		}
		if !bytes.HasPrefix(rest, []byte("\r\n")) {
			break
		}
		if n == 8 {
			return nil, 0, refuse(cMalformed)
		}
		rp.i += 2
	}

	line, err := rp.line(rp.lim.maxLine, cLineTooLong)
	if err != nil {
		return nil, 0, err
	}
	parts := strings.Split(string(line), " ")
	if len(parts) == 3 && isToken(parts[0]) {
		rp.method = parts[0]
	}
	if len(parts) != 3 || !isToken(parts[0]) {
		return nil, 0, refuse(cMalformed)
	}
	r := &refReq{method: parts[0]}
	target, version := parts[1], parts[2]
	if target == "" || !visible(target) {
		return nil, 0, refuse(cMalformed)
	}
	switch {
	case version == "HTTP/1.1" || version == "HTTP/1.0":
	case len(version) == 8 && strings.HasPrefix(version, "HTTP/") && isDigit(version[5]) && version[6] == '.' && isDigit(version[7]):
		return nil, 0, refuse(cVersion)
	default:
		return nil, 0, refuse(cMalformed)
	}
	http10 := version == "HTTP/1.0"

	var authority string
	switch {
	case strings.HasPrefix(target, "/"):
		r.target = target
	case target == "*":
		if r.method != "OPTIONS" {
			return nil, 0, refuse(cMalformed)
		}
		r.target = target
	case hasSchemePrefix(target):
		// open: the scheme's case (RFC 3986 §3.1: case-insensitive);
		// the reference accepts any case.
		rest := target[strings.Index(target, "://")+3:]
		end := strings.IndexAny(rest, "/?#")
		if end < 0 {
			end = len(rest)
		}
		authority = rest[:end]
		r.target = rest[end:]
		if !strings.HasPrefix(r.target, "/") {
			r.target = "/" + r.target
		}
		r.absolute = true
	case r.method == "CONNECT":
		return nil, 0, refuse(cMethod)
	default:
		return nil, 0, refuse(cMalformed)
	}

	// Header fields.
	size := 0
	for {
		line, err := rp.line(rp.lim.maxHeaderBytes, cHeaderLarge)
		if err != nil {
			return nil, 0, err
		}
		if len(line) == 0 {
			break
		}
		size += len(line) + 2
		if size > rp.lim.maxHeaderBytes || len(r.fields) == rp.lim.maxFields {
			return nil, 0, refuse(cHeaderLarge)
		}
		f, err := refField(line)
		if err != nil {
			return nil, 0, err
		}
		r.fields = append(r.fields, f)
	}

	if r.method == "CONNECT" {
		return nil, 0, refuse(cMethod)
	}

	// Host.
	hosts := values(r.fields, "Host")
	if len(hosts) > 1 || len(hosts) == 0 && !http10 {
		return nil, 0, refuse(cHost)
	}
	if len(hosts) == 1 {
		if !validHost(hosts[0]) {
			return nil, 0, refuse(cHost)
		}
		r.host = hosts[0]
	}
	if r.absolute {
		if authority == "" || !validHost(authority) {
			return nil, 0, refuse(cHost)
		}
		r.host = authority
	}

	// Framing.
	te, cl := values(r.fields, "Transfer-Encoding"), values(r.fields, "Content-Length")
	chunked, length := false, int64(0)
	switch {
	case len(te) > 0 && (len(cl) > 0 || http10 || len(te) > 1):
		return nil, 0, refuse(cFraming)
	case len(te) == 1:
		if te[0] != "chunked" {
			return nil, 0, refuse(codingCause(te[0]))
		}
		chunked = true
	case len(cl) > 0:
		length = -1
		for _, v := range cl {
			for elem := range strings.SplitSeq(v, ",") {
				elem = strings.Trim(elem, " \t")
				if elem == "" && v != "" {
					continue // open: empty list elements; accepted
				}
				if !digits(elem) || len(elem) > 18 {
					return nil, 0, refuse(cFraming)
				}
				n, _ := strconv.ParseInt(elem, 10, 64)
				if length >= 0 && n != length {
					return nil, 0, refuse(cFraming)
				}
				length = n
			}
		}
		if length < 0 {
			return nil, 0, refuse(cFraming)
		}
	}

	// Body.
	if chunked {
		if r.body, err = rp.chunked(); err != nil {
			return nil, 0, err
		}
	} else {
		if int64(len(rp.p)-rp.i) < length {
			return nil, 0, errIncomplete
		}
		r.body = slices.Clone(rp.p[rp.i : rp.i+int(length)])
		rp.i += int(length)
	}
	if r.body == nil {
		r.body = []byte{}
	}

	conn := values(r.fields, "Connection")
	// open: HTTP/1.0 with keep-alive may or may not stay open.
	r.closes = hasToken(conn, "close") || http10 && !hasToken(conn, "keep-alive")
	return r, rp.i, nil
}

// refField parses a field line (RFC 9110 §5, RFC 9112 §5).
func refField(line []byte) (field, error) {
	if line[0] == ' ' || line[0] == '\t' {
		return field{}, refuse(cMalformed) // obs-fold
	}
	name, value, ok := strings.Cut(string(line), ":")
	if !ok || !isToken(name) || !fieldValue(value) {
		return field{}, refuse(cMalformed)
	}
	return field{name, strings.Trim(value, " \t")}, nil
}

// codingCause is the cause for a Transfer-Encoding other than "chunked":
// a valid list of codings ending in chunked is a coding candor does not
// support (501); anything else is invalid framing.
func codingCause(v string) string {
	elems := strings.Split(v, ",")
	for i, e := range elems {
		elems[i] = strings.Trim(e, " \t")
		if !isToken(elems[i]) {
			return cFraming
		}
	}
	if len(elems) > 1 && elems[len(elems)-1] == "chunked" {
		return cCoding
	}
	return cFraming
}

// chunked decodes a chunked body (RFC 9112 §7.1).
func (rp *refParser) chunked() ([]byte, error) {
	var body []byte
	for {
		line, err := rp.line(maxChunkLine, cBody)
		if err != nil {
			if err != errIncomplete {
				err = refuse(cBody)
			}
			return nil, err
		}
		size, _, _ := bytes.Cut(line, []byte(";"))
		// open: whitespace between the size and ";" (BWS) or the end of
		// the line; accepted.
		size = bytes.TrimRight(size, " \t")
		if len(size) == 0 || len(size) > 16 || len(bytes.Trim(size, "0123456789abcdefABCDEF")) != 0 {
			return nil, refuse(cBody)
		}
		n, _ := strconv.ParseUint(string(size), 16, 64)
		if n == 0 {
			break
		}
		rest := rp.p[rp.i:]
		if avail := uint64(len(rest)); avail < n || avail-n < 2 {
			if avail >= n && !bytes.HasPrefix([]byte("\r\n"), rest[n:]) {
				return nil, refuse(cBody)
			}
			return nil, errIncomplete
		}
		if rest[n] != '\r' || rest[n+1] != '\n' {
			return nil, refuse(cBody)
		}
		body = append(body, rest[:n]...)
		rp.i += int(n) + 2
	}
	// Trailer fields: parsed like header fields, then dropped. open: their
	// size limit; the reference has none but the input's.
	for {
		line, err := rp.line(len(rp.p), cBody)
		if err != nil {
			if err != errIncomplete {
				err = refuse(cBody)
			}
			return nil, err
		}
		if len(line) == 0 {
			return body, nil
		}
		if _, err := refField(line); err != nil {
			return nil, refuse(cBody)
		}
	}
}

func hasSchemePrefix(t string) bool {
	l := strings.ToLower(t)
	return strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "https://")
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// validHost reports whether h is uri-host [":" port] (RFC 3986 §3.2.2,
// RFC 9110 §7.2): a bracketed IPv6 address, or reg-name characters
// (unreserved, pct-encoded, sub-delims, which covers IPv4), and a port of
// digits.
func validHost(h string) bool {
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return false
		}
		ip := h[1:end]
		rest := h[end+1:]
		// open: IPvFuture, which the reference refuses (the table names
		// IPv6 only), and zones (RFC 6874 "%25eth0"), which it accepts.
		ip, _, _ = strings.Cut(ip, "%25")
		if a, err := netip.ParseAddr(ip); err != nil || !a.Is6() {
			return false
		}
		return rest == "" || rest[0] == ':' && (rest == ":" || digits(rest[1:]))
	}
	name, port, hasPort := strings.Cut(h, ":")
	if hasPort && port != "" && !digits(port) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-._~!$&'()*+,;=", c) >= 0:
		case c == '%':
			if i+2 >= len(name) || !isHex(name[i+1]) || !isHex(name[i+2]) {
				return false
			}
			i += 2
		default:
			return false
		}
	}
	// open: an empty reg-name (RFC 3986 allows it); accepted.
	return true
}

func isHex(c byte) bool {
	return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// Fields the upstream must never receive from the client: hop-by-hop
// fields (RFC 9110 §7.6.1), the framing and Host (candor writes its own),
// Expect (candor answers 100-continue itself) and HTTP2-Settings (h2c is
// never forwarded).
var refDropped = []string{
	"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
	"upgrade", "content-length", "host", "expect", "http2-settings",
}

// refIgnored are fields compared neither way: candor's own and the ones
// candor may drop as spoofable or meant for itself (Proxy-Authorization,
// X-Real-Ip, underscore spellings of its own).
func refIgnored(name string) bool {
	n := strings.ReplaceAll(strings.ToLower(name), "_", "-")
	return slices.Contains(ownFields, n) || n == "x-real-ip" || n == "proxy-authorization"
}

// forwardedShape is the shape (see shape) of the fields the upstream must
// receive for r.
func (r *refReq) forwardedShape() []string {
	conn := values(r.fields, "Connection")
	var kept []field
	for _, f := range r.fields {
		n := strings.ToLower(f.name)
		if slices.Contains(refDropped, n) || refIgnored(n) || hasToken(conn, n) {
			continue
		}
		kept = append(kept, f)
	}
	return shape(kept)
}

// receivedShape is the shape of what the upstream received, without Host
// and the ignored fields.
func receivedShape(fields []field) []string {
	var kept []field
	for _, f := range fields {
		if strings.EqualFold(f.name, "host") || refIgnored(f.name) {
			continue
		}
		kept = append(kept, f)
	}
	return shape(kept)
}

// TestReferenceAgreesWithBattery checks the fuzz test's oracle against the
// battery's hand-written expectations: for every case that the reference
// can judge (one connection's bytes, no route limit), it must accept the
// same requests in the same shape and refuse the next with the same cause,
// or find it incomplete when the gateway must time out.
func TestReferenceAgreesWithBattery(t *testing.T) {
	lim := refLimits{maxLine: testMaxRequestLine, maxHeaderBytes: testMaxHeaderBytes, maxFields: testMaxHeaderFields}
	for _, tc := range battery() {
		if raw := strings.Join(tc.send, ""); strings.Contains(raw, "/small") || strings.Contains(raw, "/medium") {
			continue // a route's max_body is not the reference's business
		}
		t.Run(tc.name, func(t *testing.T) {
			res := reference([]byte(strings.Join(tc.send, "")), lim)
			nOK := 0
			for _, w := range tc.want {
				if w.cause == "" {
					nOK++
				}
			}
			if len(res.reqs) != nOK {
				t.Fatalf("reference accepts %d requests (then %s %s), the battery %d", len(res.reqs), res.end, res.cause, nOK)
			}
			for i, u := range tc.up {
				r := res.reqs[i]
				want := parseFields(u.fields)
				host := values(want, "Host")
				if r.method != u.method || r.target != u.target || len(host) != 1 || r.host != host[0] || string(r.body) != u.body {
					t.Errorf("request %d: reference %s %s host %q body %q, battery %s %s %q body %q",
						i+1, r.method, r.target, r.host, r.body, u.method, u.target, host, u.body)
				}
				if got, want := r.forwardedShape(), receivedShape(want); !slices.Equal(got, want) {
					t.Errorf("request %d: reference forwards %q, battery %q", i+1, got, want)
				}
			}
			var last []want
			if n := len(tc.want); n > 0 {
				last = tc.want[n-1:]
			}
			switch {
			case len(last) == 0 || last[0].cause == "request_timeout":
				if res.end != endIncomplete {
					t.Errorf("reference ends with %s %s, the battery with a timeout", res.end, res.cause)
				}
			case last[0].cause != "":
				if res.end != endRefused || res.cause != last[0].cause {
					t.Errorf("reference ends with %s %s, the battery refuses with %s", res.end, res.cause, last[0].cause)
				}
			case tc.closed:
				if res.end != endClosed {
					t.Errorf("reference ends with %s, the battery closes the connection", res.end)
				}
			default:
				if res.end != endData {
					t.Errorf("reference ends with %s %s, the battery accepts everything", res.end, res.cause)
				}
			}
		})
	}
}
