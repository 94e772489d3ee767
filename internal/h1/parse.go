package h1

import (
	"bytes"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"

	"candor/internal/failure"
)

// The request head parser. It applies candor's request decision table
// (README "Limits and timeouts" and the cause table's request_* rows) to
// the bytes of one head as they arrive: each complete line is checked as soon as it is
// there, so that an invalid or oversized head is refused without waiting
// for the rest, and the limits hold for heads that never end.
//
// net/http's reader is not used: it accepts bare LF line endings, leading
// whitespace tricks and ambiguous framing that candor must refuse, reports
// refusals as strings, and allocates per field. This parser keeps offsets
// into the connection's read buffer and builds a request's strings from
// one allocation (see [reqState.build]).

// limits bounds one request head.
type limits struct {
	// line bounds the request line, CRLF excluded.
	line int
	// header bounds the header section: the field lines with their CRLFs,
	// the request line and the final empty line excluded.
	header int
	// fields bounds the number of field lines.
	fields int
}

// headCap is the most bytes a head within lim can take in the read buffer:
// the skipped empty lines, the request line, the header section and the
// CRLFs around them, and a byte of the line that crosses a limit.
func (lim limits) headCap() int {
	return 2*maxBlankLines + lim.line + 2 + lim.header + 2 + 2
}

// maxBlankLines is the number of empty lines skipped before a request line
// (RFC 9112 §2.2: "SHOULD ignore at least one empty line (CRLF) received
// prior to the request-line").
const maxBlankLines = 8

// span is the half-open range [lo, hi) of a head's bytes, as offsets from
// the start of the head (the first byte after the previous request).
type span struct{ lo, hi int }

func (s span) of(b []byte) []byte { return b[s.lo:s.hi] }

// targetForm is the form of a request target (RFC 9112 §3.2).
type targetForm uint8

const (
	formOrigin    targetForm = iota // "/path?query"
	formAbsolute                    // "http://host/path"
	formAsterisk                    // "*", OPTIONS only
	formAuthority                   // "host:port", CONNECT only
)

// teClass is what a Transfer-Encoding value means to candor.
type teClass uint8

const (
	teNone        teClass = iota
	teChunked             // exactly "chunked"
	teUnsupported         // codings ending in chunked: 501
	teInvalid             // anything else: 400
)

// field is a header field kept for the request's Header.
type field struct{ name, value span }

// parser is the state of one request head being parsed. Its zero value is
// not ready: call reset.
type parser struct {
	lim limits

	// off is the length of the complete lines consumed so far.
	off int
	// blank counts the empty lines skipped before the request line.
	blank int
	// line0 is where the request line starts (after the empty lines).
	line0 int
	// inFields is set once the request line was accepted.
	inFields bool
	// done is set when the empty line ending the head was consumed.
	done bool
	// hdrBytes is the size of the header section so far.
	hdrBytes int
	// nfields counts all field lines, kept or not.
	nfields int

	method, target span
	minor          int // HTTP/1.minor
	form           targetForm
	// authority is the host[:port] of an absolute-form target.
	authority span

	fields []field // the fields kept for Header, in order

	hosts     int
	host      span
	clSeen    bool
	cl        int64
	clValue   span // the first Content-Length value, for Header
	teLines   int
	te        teClass
	closeOpt  bool // Connection: close
	keepAlive bool // Connection: keep-alive
	expect100 bool // Expect: 100-continue
}

// reset prepares p for a new head within lim, keeping the capacity of its
// field list.
func (p *parser) reset(lim limits) {
	*p = parser{lim: lim, fields: p.fields[:0], cl: -1}
}

// errf builds a refusal of kind k; the detail is for logs.
func errf(k failure.Kind, detail string) *failure.Error { return failure.New(k, detail) }

// feed parses the complete lines of b, the head's bytes so far (b starts
// where the head starts, and each call passes the same bytes plus what
// arrived since). It reports done when the head is complete: p.off is then
// its length. On a refusal the error's Kind is the decision table's cause.
//
// feed canonicalises header field names in place in b.
func (p *parser) feed(b []byte) (bool, *failure.Error) {
	for !p.done {
		nl := bytes.IndexByte(b[p.off:], '\n')
		if nl < 0 {
			return false, p.partial(b[p.off:])
		}
		end := p.off + nl // index of the LF
		// The limits first, as partial applies them to a line still
		// arriving, so that a head is read the same way whether it
		// arrives whole or in pieces.
		if fe := p.partial(b[p.off:end]); fe != nil {
			return false, fe
		}
		if end == p.off || b[end-1] != '\r' {
			return false, errf(failure.RequestMalformed, p.lineName()+" ends in a bare LF (RFC 9112 §2.2)")
		}
		line := b[p.off : end-1]
		start := p.off
		p.off = end + 1
		if !p.inFields {
			if len(line) == 0 {
				p.blank++
				if p.blank > maxBlankLines {
					return false, errf(failure.RequestMalformed, "more than "+strconv.Itoa(maxBlankLines)+" empty lines before the request line")
				}
				continue
			}
			if len(line) > p.lim.line {
				return false, errf(failure.RequestLineTooLong, "request line of "+strconv.Itoa(len(line))+" bytes exceeds "+strconv.Itoa(p.lim.line))
			}
			p.line0 = start
			if fe := p.requestLine(b, start, line); fe != nil {
				return false, fe
			}
			p.inFields = true
			continue
		}
		if len(line) == 0 {
			p.done = true
			if fe := p.finish(b); fe != nil {
				return false, fe
			}
			return true, nil
		}
		p.hdrBytes += len(line) + 2
		if p.hdrBytes > p.lim.header {
			return false, errf(failure.RequestHeaderTooLarge, "header section exceeds "+strconv.Itoa(p.lim.header)+" bytes")
		}
		p.nfields++
		if p.nfields > p.lim.fields {
			return false, errf(failure.RequestHeaderTooLarge, "more than "+strconv.Itoa(p.lim.fields)+" header fields")
		}
		if fe := p.fieldLine(b, start, line); fe != nil {
			return false, fe
		}
	}
	return true, nil
}

// partial checks the limits against rest, an incomplete line, so that a
// line that never ends is refused as soon as it is too long.
func (p *parser) partial(rest []byte) *failure.Error {
	n := len(rest)
	if n == 0 {
		return nil
	}
	if !p.inFields {
		// A line of exactly lim.line bytes may still be followed by its
		// CR, then its LF.
		if n > p.lim.line+1 {
			return errf(failure.RequestLineTooLong, "request line exceeds "+strconv.Itoa(p.lim.line)+" bytes")
		}
		return nil
	}
	if n == 1 && rest[0] == '\r' {
		return nil // perhaps the empty line ending the head
	}
	// The line will take at least n+1 bytes (its LF at least).
	if p.hdrBytes+n+1 > p.lim.header {
		return errf(failure.RequestHeaderTooLarge, "header section exceeds "+strconv.Itoa(p.lim.header)+" bytes")
	}
	return nil
}

// lineName names the line being parsed in errors.
func (p *parser) lineName() string {
	if !p.inFields {
		return "request line"
	}
	return "header line " + strconv.Itoa(p.nfields+1)
}

// requestLine parses RFC 9112 §3:
//
//	request-line = method SP request-target SP HTTP-version
//
// with exactly one SP between the parts; line starts at offset start of b.
func (p *parser) requestLine(b []byte, start int, line []byte) *failure.Error {
	bad := func(why string) *failure.Error {
		return errf(failure.RequestMalformed, "request line: "+why+": "+failure.Quote(line))
	}
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		if sp1 == 0 {
			return bad("empty method")
		}
		return bad("no SP after the method")
	}
	for _, c := range line[:sp1] {
		if !isTchar(c) {
			return bad("method is not a token")
		}
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 < 0 {
		return bad("no SP after the request target")
	}
	if sp2 == 0 {
		return bad("empty request target")
	}
	target := rest[:sp2]
	for _, c := range target {
		if !targetChars[c] {
			return bad("invalid byte in the request target")
		}
	}
	version := rest[sp2+1:]
	switch string(version) {
	case "HTTP/1.1":
		p.minor = 1
	case "HTTP/1.0":
		p.minor = 0
	default:
		if len(version) == 8 && string(version[:5]) == "HTTP/" && isDigit(version[5]) && version[6] == '.' && isDigit(version[7]) {
			return errf(failure.RequestVersionUnsupported, "request line: version "+string(version))
		}
		return bad("invalid HTTP version")
	}
	p.method = span{start, start + sp1}
	p.target = span{start + sp1 + 1, start + sp1 + 1 + sp2}
	method := line[:sp1]
	switch {
	case target[0] == '/':
		p.form = formOrigin
	case len(target) == 1 && target[0] == '*':
		if string(method) != http.MethodOptions {
			return bad("asterisk-form target with a method other than OPTIONS")
		}
		p.form = formAsterisk
	case string(method) == http.MethodConnect:
		p.form = formAuthority
	case hasPrefixFold(target, "http://"), hasPrefixFold(target, "https://"):
		p.form = formAbsolute
		lo := bytes.Index(target, []byte("://")) + 3
		hi := lo
		for hi < len(target) && target[hi] != '/' && target[hi] != '?' && target[hi] != '#' {
			hi++
		}
		p.authority = span{p.target.lo + lo, p.target.lo + hi}
	default:
		return bad("request target is not origin-form, absolute-form (http or https), OPTIONS * or CONNECT's authority-form")
	}
	return nil
}

// fieldLine parses RFC 9112 §5 (the line starts at offset start of b):
//
//	field-line = field-name ":" OWS field-value OWS
//
// obs-fold (§5.2), whitespace before the colon (§5.1), and control
// characters other than HTAB, or DEL, in a value (RFC 9110 §5.5) are
// refused.
func (p *parser) fieldLine(b []byte, start int, line []byte) *failure.Error {
	name, value, why := splitField(line)
	if why != "" {
		return errf(failure.RequestMalformed, p.lineName()+": "+why+": "+failure.Quote(line))
	}
	vlo := start + (cap(line) - cap(value))
	vs := span{vlo, vlo + len(value)}
	switch fieldKindOf(name) {
	case kindHost:
		p.hosts++
		if p.hosts > 1 {
			return errf(failure.RequestHostInvalid, "more than one Host field")
		}
		if !validHost(value) {
			return errf(failure.RequestHostInvalid, "invalid Host "+failure.Quote(value))
		}
		p.host = vs
		return nil
	case kindContentLength:
		return p.contentLength(value, vlo)
	case kindTransferEncoding:
		p.teLines++
		p.te = classifyTE(value)
		return nil
	case kindExpect:
		if equalFold(value, "100-continue") {
			p.expect100 = true
		}
		return nil // handled here, never forwarded
	case kindConnection:
		p.connection(value)
	}
	canonicalize(name)
	p.fields = append(p.fields, field{name: span{start, start + len(name)}, value: vs})
	return nil
}

// splitField splits a field line into its name and trimmed value (both
// aliasing line), or says why it is invalid.
func splitField(line []byte) (name, value []byte, why string) {
	if line[0] == ' ' || line[0] == '\t' {
		return nil, nil, "obsolete line folding or whitespace before the field name (RFC 9112 §5.2)"
	}
	colon := bytes.IndexByte(line, ':')
	if colon < 0 {
		return nil, nil, "no colon"
	}
	if colon == 0 {
		return nil, nil, "empty field name"
	}
	name = line[:colon]
	for _, c := range name {
		if !isTchar(c) {
			if c == ' ' || c == '\t' {
				return nil, nil, "whitespace before the colon (RFC 9112 §5.1)"
			}
			return nil, nil, "field name is not a token"
		}
	}
	value = line[colon+1:]
	for len(value) > 0 && (value[0] == ' ' || value[0] == '\t') {
		value = value[1:]
	}
	for len(value) > 0 && (value[len(value)-1] == ' ' || value[len(value)-1] == '\t') {
		value = value[:len(value)-1]
	}
	for _, c := range value {
		if !valueChars[c] {
			if c == '\r' {
				return nil, nil, "bare CR (RFC 9112 §2.2)"
			}
			return nil, nil, "control character in the field value (RFC 9110 §5.5)"
		}
	}
	return name, value, ""
}

// contentLength applies RFC 9110 §8.6 and RFC 9112 §6.3 rule 5:
// Content-Length = 1*DIGIT (at most 18, so that it never overflows); a
// list or repetition of one value is that value; differing values are
// refused.
func (p *parser) contentLength(v []byte, vlo int) *failure.Error {
	off := 0
	for {
		i := bytes.IndexByte(v[off:], ',')
		elem := v[off:]
		if i >= 0 {
			elem = v[off : off+i]
		}
		lo := off
		for len(elem) > 0 && (elem[0] == ' ' || elem[0] == '\t') {
			elem = elem[1:]
			lo++
		}
		for len(elem) > 0 && (elem[len(elem)-1] == ' ' || elem[len(elem)-1] == '\t') {
			elem = elem[:len(elem)-1]
		}
		n, ok := parseDecimal(elem)
		if !ok {
			return errf(failure.RequestFramingInvalid, "invalid Content-Length "+failure.Quote(v))
		}
		if p.clSeen && n != p.cl {
			return errf(failure.RequestFramingInvalid, "conflicting Content-Length values "+strconv.FormatInt(p.cl, 10)+" and "+strconv.FormatInt(n, 10))
		}
		if !p.clSeen {
			p.clValue = span{vlo + lo, vlo + lo + len(elem)}
		}
		p.cl, p.clSeen = n, true
		if i < 0 {
			return nil
		}
		off += i + 1
	}
}

// parseDecimal parses 1*DIGIT of at most 18 digits.
func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// classifyTE classifies a Transfer-Encoding value (RFC 9112 §6.1, §7):
// exactly "chunked" is the one coding candor forwards; a list of valid
// codings ending in "chunked" is one it does not implement (501); anything
// else, including a different case, empty list elements, parameters or a
// chunked that is not last or appears twice, is invalid framing.
func classifyTE(v []byte) teClass {
	if string(v) == "chunked" {
		return teChunked
	}
	last := bytes.LastIndexByte(v, ',')
	if last < 0 {
		return teInvalid
	}
	for off := 0; off <= last; {
		i := bytes.IndexByte(v[off:], ',')
		elem := trimOWS(v[off : off+i])
		if len(elem) == 0 || equalFold(elem, "chunked") {
			return teInvalid
		}
		for _, c := range elem {
			if !isTchar(c) {
				return teInvalid
			}
		}
		off += i + 1
	}
	if string(trimOWS(v[last+1:])) != "chunked" {
		return teInvalid
	}
	return teUnsupported
}

// connection notes the options of a Connection field that matter to the
// server (RFC 9112 §9.3, §9.6).
func (p *parser) connection(v []byte) {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		elem := v
		if i >= 0 {
			elem, v = v[:i], v[i+1:]
		} else {
			v = nil
		}
		elem = trimOWS(elem)
		switch {
		case equalFold(elem, "close"):
			p.closeOpt = true
		case equalFold(elem, "keep-alive"):
			p.keepAlive = true
		}
	}
}

// finish applies the rules that need the whole head: Host presence,
// framing, CONNECT.
func (p *parser) finish(b []byte) *failure.Error {
	if p.form == formAuthority || string(p.method.of(b)) == http.MethodConnect {
		return errf(failure.MethodNotSupported, "CONNECT")
	}
	if p.minor == 1 && p.hosts == 0 {
		return errf(failure.RequestHostInvalid, "HTTP/1.1 request without Host (RFC 9112 §3.2)")
	}
	if p.form == formAbsolute {
		a := p.authority.of(b)
		if len(a) == 0 || bytes.IndexByte(a, '@') >= 0 || !validHost(a) || a[0] == ':' {
			return errf(failure.RequestHostInvalid, "invalid authority in the request target "+failure.Quote(a))
		}
	}
	if p.teLines > 0 {
		switch {
		case p.clSeen:
			return errf(failure.RequestFramingInvalid, "both Content-Length and Transfer-Encoding (RFC 9112 §6.3)")
		case p.minor == 0:
			return errf(failure.RequestFramingInvalid, "Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1)")
		case p.teLines > 1:
			return errf(failure.RequestFramingInvalid, "more than one Transfer-Encoding field")
		case p.te == teUnsupported:
			return errf(failure.RequestCodingUnsupported, "transfer codings other than chunked")
		case p.te != teChunked:
			return errf(failure.RequestFramingInvalid, "Transfer-Encoding is not exactly chunked")
		}
	}
	return nil
}

// chunked reports whether the body is chunked.
func (p *parser) chunked() bool { return p.teLines > 0 }

// contentLengthOf returns the request's ContentLength as net/http reports
// it: -1 for chunked, 0 for no body.
func (p *parser) contentLengthOf() int64 {
	switch {
	case p.chunked():
		return -1
	case p.clSeen:
		return p.cl
	}
	return 0
}

// wantsClose reports whether the client asked to close the connection
// after the response (RFC 9112 §9.3: HTTP/1.0 without keep-alive, or
// Connection: close).
func (p *parser) wantsClose() bool {
	return p.closeOpt || p.minor == 0 && !p.keepAlive
}

// fieldKind names the fields the parser handles itself.
type fieldKind uint8

const (
	kindOther fieldKind = iota
	kindHost
	kindContentLength
	kindTransferEncoding
	kindConnection
	kindExpect
)

func fieldKindOf(name []byte) fieldKind {
	switch len(name) {
	case 4:
		if equalFold(name, "Host") {
			return kindHost
		}
	case 6:
		if equalFold(name, "Expect") {
			return kindExpect
		}
	case 10:
		if equalFold(name, "Connection") {
			return kindConnection
		}
	case 14:
		if equalFold(name, "Content-Length") {
			return kindContentLength
		}
	case 17:
		if equalFold(name, "Transfer-Encoding") {
			return kindTransferEncoding
		}
	}
	return kindOther
}

// canonicalize rewrites a token field name in place in the canonical form
// of textproto.CanonicalMIMEHeaderKey: upper case at the start and after
// each hyphen, lower case elsewhere.
func canonicalize(name []byte) {
	upper := true
	for i, c := range name {
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		name[i] = c
		upper = c == '-'
	}
}

// validHost reports whether h is RFC 9110 §7.2's
//
//	Host = uri-host [ ":" port ]
//
// with uri-host an IP-literal holding an IPv6 address (no zone), or a
// reg-name (which covers IPv4address): unreserved, pct-encoded and
// sub-delims characters; port is digits only. An empty host is valid
// (RFC 9110 §7.2 has clients send an empty Host when the target has no
// authority); userinfo ("@") is not.
func validHost(h []byte) bool {
	if len(h) > 0 && h[0] == '[' {
		end := bytes.IndexByte(h, ']')
		if end < 0 {
			return false
		}
		a, err := netip.ParseAddr(string(h[1:end]))
		if err != nil || !a.Is6() || a.Zone() != "" {
			return false
		}
		h = h[end+1:]
		if len(h) == 0 {
			return true
		}
		if h[0] != ':' {
			return false
		}
		return allDigits(h[1:])
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case regNameChars[c]:
		case c == '%':
			if i+2 >= len(h) || !isHex(h[i+1]) || !isHex(h[i+2]) {
				return false
			}
			i += 2
		case c == ':':
			return allDigits(h[i+1:])
		default:
			return false
		}
	}
	return true
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

// setURL sets u from the request target s (a string of the head), as
// net/http's url.ParseRequestURI would. The common origin-form target
// (path characters that need no escaping, an optional query) is split
// without allocating; anything else goes through url.ParseRequestURI.
func setURL(u *url.URL, s string, form targetForm) bool {
	switch form {
	case formAsterisk:
		*u = url.URL{Path: "*"}
		return true
	case formOrigin:
		path, query := s, ""
		q := -1
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c == '?' {
				q = i
				break
			}
			if !plainPathChars[c] {
				return parseURL(u, s)
			}
		}
		if q >= 0 {
			path, query = s[:q], s[q+1:]
		}
		*u = url.URL{Path: path, RawQuery: query, ForceQuery: q >= 0 && query == ""}
		return true
	}
	return parseURL(u, s)
}

func parseURL(u *url.URL, s string) bool {
	pu, err := url.ParseRequestURI(s)
	if err != nil {
		return false
	}
	*u = *pu
	return true
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && equalFold(b[:len(prefix)], prefix)
}

// equalFold compares ASCII case-insensitively.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c, d := b[i], s[i]
		if c == d {
			continue
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isTchar(c byte) bool { return tchars[c] }

// Byte classes.
var (
	// tchars: RFC 9110 §5.6.2 token characters.
	tchars [256]bool
	// valueChars: field-value bytes (RFC 9110 §5.5): VCHAR, obs-text,
	// SP and HTAB.
	valueChars [256]bool
	// targetChars: request-target bytes: visible US-ASCII only.
	targetChars [256]bool
	// regNameChars: RFC 3986 unreserved and sub-delims.
	regNameChars [256]bool
	// plainPathChars: path bytes that url.URL.EscapedPath leaves as they
	// are and that need no unescaping, so that Path is the target's path
	// and RawPath is empty.
	plainPathChars [256]bool
)

func init() {
	for c := 0; c < 256; c++ {
		b := byte(c)
		alnum := 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9'
		tchars[c] = alnum || bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), b) >= 0
		valueChars[c] = b == '\t' || b == ' ' || (b > 0x20 && b != 0x7f)
		targetChars[c] = b > 0x20 && b < 0x7f
		regNameChars[c] = alnum || bytes.IndexByte([]byte("-._~!$&'()*+,;="), b) >= 0
		plainPathChars[c] = alnum || bytes.IndexByte([]byte("-_.~$&+,/:;=@"), b) >= 0
	}
}
