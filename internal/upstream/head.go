package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"

	"candor/internal/failure"
)

// Field is one response header field as received: name as sent (not
// canonicalised), value with surrounding whitespace removed.
type Field struct {
	Name  string
	Value string
}

// BodyMode says how a response body is delimited (RFC 9112 §6.3).
type BodyMode uint8

const (
	// BodyNone: no body (HEAD, 1xx, 204, 304).
	BodyNone BodyMode = iota
	// BodyLength: exactly ContentLength bytes.
	BodyLength
	// BodyChunked: the chunked transfer coding (RFC 9112 §7.1).
	BodyChunked
	// BodyClose: everything until the upstream closes (RFC 9112 §6.3 rule 8).
	BodyClose
)

// Head is a parsed, validated response head.
type Head struct {
	// Status is the status code, 100-599.
	Status int
	// Reason is the reason phrase, possibly empty.
	Reason string
	// Minor is the HTTP/1.x minor version.
	Minor int
	// Fields are the end-to-end header fields in received order:
	// hop-by-hop fields (RFC 9110 §7.6.1), those named by Connection, and
	// the framing fields Content-Length and Transfer-Encoding are removed;
	// framing is reported by Mode and ContentLength instead.
	Fields []Field
	// Mode is how the body is delimited.
	Mode BodyMode
	// ContentLength is the declared Content-Length, or -1 when none was
	// sent. It is set for BodyNone responses that declare one (HEAD, 304).
	ContentLength int64
	// Close reports that the connection cannot be reused after this
	// response.
	Close bool
	// KeepAlive is the upstream's Keep-Alive timeout hint in seconds, or 0.
	KeepAlive int
	// Size is the number of bytes the head took on the wire, interim
	// responses included.
	Size int
	// Upgrade is, for a 101 (Switching Protocols) response, the protocols
	// the upstream switched to: its Upgrade field, which is hop-by-hop and
	// so not in Fields (the caller relays it with its own Connection:
	// Upgrade). Empty for every other status.
	Upgrade string
}

// Limits bounds a response head.
type Limits struct {
	// Bytes bounds the status line and header section together, CRLFs
	// included.
	Bytes int
	// Fields bounds the number of header fields.
	Fields int
}

// maxInterim bounds the 1xx interim responses accepted before the final one.
const maxInterim = 8

// headReader reads one response head from br under limits. It reuses its
// scratch buffer between heads.
type headReader struct {
	br      *bufio.Reader
	lim     Limits
	used    int // bytes of the head so far
	scratch []byte
}

// errHead builds a head-phase error of kind k.
func errHead(k failure.Kind, detail string) error { return failure.New(k, detail) }

// readHead reads and validates a complete response head, skipping interim
// 1xx responses (RFC 9110 §15.2). method is the request's method: a response
// to HEAD has no body (RFC 9112 §6.3 rule 1). upgrade is the request's
// Upgrade field, empty when it asked for none: a 101 (Switching Protocols)
// is a final head only in answer to one, and only to a protocol it offered.
func readHead(br *bufio.Reader, lim Limits, method, upgrade string) (*Head, error) {
	hr := headReader{br: br, lim: lim}
	for range maxInterim + 1 {
		h, err := hr.readOne(method, upgrade)
		if err != nil {
			return nil, err
		}
		if h.Status >= 200 || h.Status == 101 {
			h.Size = hr.used
			return h, nil
		}
		// An interim response: its fields were validated; drop it.
	}
	return nil, errHead(failure.MalformedStatusLine, "more than "+strconv.Itoa(maxInterim)+" interim 1xx responses")
}

// readLine returns the next line without its CRLF. RFC 9112 §2.2: candor
// requires CRLF; a bare LF (which the RFC lets recipients accept) and a
// bare CR (which it requires to be rejected or replaced) are both errors
// here, reported as kind k.
func (hr *headReader) readLine(k failure.Kind, what string) ([]byte, error) {
	hr.scratch = hr.scratch[:0]
	for {
		frag, err := hr.br.ReadSlice('\n')
		hr.used += len(frag)
		if hr.used > hr.lim.Bytes {
			return nil, errHead(failure.HeadTooLarge, "response head exceeds "+strconv.Itoa(hr.lim.Bytes)+" bytes")
		}
		if err == bufio.ErrBufferFull {
			hr.scratch = append(hr.scratch, frag...)
			continue
		}
		line := frag
		if len(hr.scratch) > 0 {
			hr.scratch = append(hr.scratch, frag...)
			line = hr.scratch
		}
		if err != nil {
			if hr.used == 0 && errors.Is(err, io.EOF) {
				return nil, err // nothing at all: classified by the caller
			}
			if errors.Is(err, io.EOF) {
				return nil, failure.Wrap(failure.TruncatedHead, "connection closed after "+strconv.Itoa(hr.used)+" bytes of the response head", io.ErrUnexpectedEOF)
			}
			if ne, ok := errors.AsType[net.Error](err); (ok && ne.Timeout()) || hr.used == 0 {
				return nil, err // a timeout stays a timeout (504)
			}
			// A reset or other error after part of the head arrived: the
			// response began, so it is not "before response".
			return nil, failure.Wrap(failure.TruncatedHead, "connection failed after "+strconv.Itoa(hr.used)+" bytes of the response head", err)
		}
		if len(line) < 2 || line[len(line)-2] != '\r' {
			return nil, errHead(k, what+" ends in a bare LF (RFC 9112 §2.2): "+failure.Quote(line))
		}
		line = line[:len(line)-2]
		if i := bytes.IndexByte(line, '\r'); i >= 0 {
			return nil, errHead(k, what+" contains a bare CR (RFC 9112 §2.2): "+failure.Quote(line))
		}
		return line, nil
	}
}

// readOne reads one status line and header section.
func (hr *headReader) readOne(method, upgrade string) (*Head, error) {
	if hr.used == 0 {
		if err := hr.sniff(); err != nil {
			return nil, err
		}
	}
	line, err := hr.readLine(failure.MalformedStatusLine, "status line")
	if err != nil {
		return nil, err
	}
	h := &Head{ContentLength: -1}
	if err := parseStatusLine(line, h); err != nil {
		return nil, err
	}
	var fr framing
	for n := 0; ; n++ {
		line, err := hr.readLine(failure.MalformedHeader, "header line "+strconv.Itoa(n+1))
		if err != nil {
			return nil, err
		}
		if len(line) == 0 {
			break
		}
		if n >= hr.lim.Fields {
			return nil, errHead(failure.HeadTooLarge, "more than "+strconv.Itoa(hr.lim.Fields)+" header fields")
		}
		f, err := parseField(line, n+1)
		if err != nil {
			return nil, err
		}
		if err := fr.note(f, h); err != nil {
			return nil, err
		}
		h.Fields = append(h.Fields, f)
	}
	if h.Status == 101 {
		if err := fr.switching(h, upgrade); err != nil {
			return nil, err
		}
		h.Fields = dropHopByHop(h.Fields, fr.connection)
		return h, nil
	}
	if h.Status < 200 {
		return h, nil
	}
	if err := fr.decide(h, method); err != nil {
		return nil, err
	}
	h.Fields = dropHopByHop(h.Fields, fr.connection)
	return h, nil
}

// sniff looks at the first byte of a response for another protocol than
// HTTP/1.x, so that the operator hears "wrong protocol" rather than "bad
// status line".
func (hr *headReader) sniff() error {
	b, err := hr.br.Peek(1)
	if err != nil {
		return err
	}
	switch b[0] {
	case 0x00:
		// An HTTP/2 frame header starts with a 24-bit length; a SETTINGS
		// or GOAWAY frame is far below 2^16 bytes (RFC 9113 §4.1).
		return errHead(failure.ProtocolMismatch, "response starts like an HTTP/2 frame")
	case 0x15, 0x16:
		// TLS alert or handshake record, version 3.x (RFC 8446 §5.1).
		if b2, err := hr.br.Peek(2); err == nil && b2[1] == 0x03 {
			return errHead(failure.ProtocolMismatch, "response is a TLS record: the target speaks TLS but is configured as http")
		}
	}
	return nil
}

// parseStatusLine parses RFC 9112 §4:
//
//	status-line = HTTP-version SP status-code SP [ reason-phrase ]
//	HTTP-version = "HTTP/" DIGIT "." DIGIT   (§2.3; case-sensitive)
//	status-code = 3DIGIT                     (RFC 9110 §15: 100-599)
//	reason-phrase = 1*( HTAB / SP / VCHAR / obs-text )
//
// One leniency, documented: a status line that ends right after the code
// ("HTTP/1.1 200") is accepted, as it is unambiguous and common.
func parseStatusLine(line []byte, h *Head) error {
	bad := func(why string) error {
		return errHead(failure.MalformedStatusLine, why+": "+failure.Quote(line))
	}
	if len(line) < 12 || string(line[:7]) != "HTTP/1." {
		switch {
		case bytes.HasPrefix(line, []byte("HTTP/1.")):
			// RFC 9112 §4: HTTP-version SP 3DIGIT takes 12 bytes; a shorter
			// line is a cut-off code, not another HTTP version.
			return bad("status line too short for HTTP-version SP status-code")
		case len(line) >= 8 && string(line[:5]) == "HTTP/":
			return bad("not HTTP/1.x")
		}
		if len(line) >= 14 && string(line[:14]) == "PRI * HTTP/2.0" {
			return errHead(failure.ProtocolMismatch, "response is an HTTP/2 connection preface")
		}
		return bad("not an HTTP/1.x status line")
	}
	if !isDigit(line[7]) {
		return bad("invalid HTTP version")
	}
	h.Minor = int(line[7] - '0')
	if line[8] != ' ' {
		return bad("expected SP after the HTTP version")
	}
	c := line[9:12]
	if !isDigit(c[0]) || !isDigit(c[1]) || !isDigit(c[2]) {
		return bad("status code is not three digits")
	}
	h.Status = int(c[0]-'0')*100 + int(c[1]-'0')*10 + int(c[2]-'0')
	if h.Status < 100 || h.Status > 599 {
		return bad("status code outside 100-599")
	}
	rest := line[12:]
	if len(rest) == 0 {
		return nil
	}
	if rest[0] != ' ' {
		return bad("expected SP after the status code")
	}
	for _, b := range rest[1:] {
		if !isFieldVChar(b) && b != ' ' && b != '\t' {
			return bad("control character in the reason phrase")
		}
	}
	h.Reason = string(rest[1:])
	return nil
}

// parseField parses RFC 9112 §5:
//
//	field-line = field-name ":" OWS field-value OWS
//
// §5.1: no whitespace is allowed between the name and the colon (a proxy
// must reject or repair; candor rejects). §5.2: obs-fold is rejected with a
// 502, one of the two options the RFC gives a proxy. RFC 9110 §5.5: a value
// with CR, LF, NUL or other control characters is invalid.
func parseField(line []byte, n int) (Field, error) {
	where := "header line " + strconv.Itoa(n)
	bad := func(why string) (Field, error) {
		return Field{}, errHead(failure.MalformedHeader, where+": "+why+": "+failure.Quote(line))
	}
	if line[0] == ' ' || line[0] == '\t' {
		return bad("obsolete line folding (RFC 9112 §5.2)")
	}
	colon := bytes.IndexByte(line, ':')
	if colon < 0 {
		return bad("no colon")
	}
	if colon == 0 {
		return bad("empty field name")
	}
	name := line[:colon]
	if last := name[len(name)-1]; last == ' ' || last == '\t' {
		return bad("whitespace before the colon (RFC 9112 §5.1)")
	}
	for _, b := range name {
		if !isTchar(b) {
			return bad("invalid character in the field name")
		}
	}
	v := trimOWS(line[colon+1:])
	for _, b := range v {
		if !isFieldVChar(b) && b != ' ' && b != '\t' {
			return bad("control character in the field value (RFC 9110 §5.5)")
		}
	}
	return Field{Name: string(name), Value: string(v)}, nil
}

// framing accumulates the fields that decide the body's length and the
// connection's fate.
type framing struct {
	cl         int64 // -1 until seen
	clSeen     bool
	te         bool
	teChunked  int // chunked codings seen
	teOther    string
	connection []string // lower-case tokens of Connection
	upgrade    []string // Upgrade field values, kept for a 101
}

func (fr *framing) note(f Field, h *Head) error {
	switch {
	case strings.EqualFold(f.Name, "Content-Length"):
		return fr.noteContentLength(f.Value)
	case strings.EqualFold(f.Name, "Transfer-Encoding"):
		fr.te = true
		for tok := range strings.SplitSeq(f.Value, ",") {
			tok = strings.Trim(tok, " \t")
			switch {
			case tok == "":
				// RFC 9110 §5.6.1: empty list elements are ignored.
			case strings.EqualFold(tok, "chunked"):
				fr.teChunked++
			case fr.teOther == "":
				fr.teOther = tok
			}
		}
	case strings.EqualFold(f.Name, "Connection"):
		for tok := range strings.SplitSeq(f.Value, ",") {
			tok = strings.ToLower(strings.Trim(tok, " \t"))
			if tok == "close" {
				h.Close = true
			}
			if tok != "" {
				fr.connection = append(fr.connection, tok)
			}
		}
	case strings.EqualFold(f.Name, "Keep-Alive"):
		h.KeepAlive = keepAliveTimeout(f.Value)
	case strings.EqualFold(f.Name, "Upgrade"):
		fr.upgrade = append(fr.upgrade, f.Value)
	}
	return nil
}

// switching validates a 101 (Switching Protocols) response to a request
// whose Upgrade field was offered ("" for none). RFC 9110 §15.2.2: a server
// sends 101 only in answer to Upgrade; §7.8: its Upgrade field names the
// protocols it switches to, and it "MUST NOT switch to a protocol that was
// not indicated by the client". Connection: upgrade, which the server also
// ought to send, is not required: its absence is no risk once both sides
// agree on the switch. A 101 has no body: Transfer-Encoding (RFC 9112 §6.1)
// and Content-Length (RFC 9110 §8.6) are forbidden in it, and candor rejects
// them rather than guess where the new protocol starts. The connection is
// never reused for HTTP afterwards.
func (fr *framing) switching(h *Head, offered string) error {
	if offered == "" {
		return errHead(failure.UnexpectedUpgrade, "101 Switching Protocols to a request without Upgrade")
	}
	if fr.te {
		return errHead(failure.InvalidFraming, "Transfer-Encoding in a 101 response (RFC 9112 §6.1)")
	}
	if fr.clSeen {
		return errHead(failure.InvalidFraming, "Content-Length in a 101 response (RFC 9110 §8.6)")
	}
	got := strings.Join(fr.upgrade, ", ")
	n := 0
	for tok := range strings.SplitSeq(got, ",") {
		tok = strings.Trim(tok, " \t")
		if tok == "" {
			continue // RFC 9110 §5.6.1: empty list elements are ignored
		}
		if !upgradeOffered(offered, tok) {
			return errHead(failure.UnexpectedUpgrade, "101 Switching Protocols to "+failure.Quote([]byte(tok))+", which the request did not offer (RFC 9110 §7.8); it offered "+failure.Quote([]byte(offered)))
		}
		n++
	}
	if n == 0 {
		return errHead(failure.UnexpectedUpgrade, "101 Switching Protocols without an Upgrade field naming the new protocol (RFC 9110 §7.8)")
	}
	h.Upgrade = got
	h.Mode = BodyNone
	h.Close = true
	return nil
}

// upgradeOffered reports whether the protocol tok (protocol-name
// ["/" protocol-version], RFC 9110 §7.8) is among the comma-separated
// protocols of offered. Names compare case-insensitively; a version, when
// both give one, must match too.
func upgradeOffered(offered, tok string) bool {
	name, version, _ := strings.Cut(tok, "/")
	for o := range strings.SplitSeq(offered, ",") {
		oName, oVersion, _ := strings.Cut(strings.Trim(o, " \t"), "/")
		if strings.EqualFold(name, oName) && (version == "" || oVersion == "" || strings.EqualFold(version, oVersion)) {
			return true
		}
	}
	return false
}

// noteContentLength applies RFC 9112 §6.3 rule 5 and RFC 9110 §8.6:
// Content-Length = 1*DIGIT; a list or repetition of identical values is
// treated as one value; anything else is invalid framing.
func (fr *framing) noteContentLength(v string) error {
	for tok := range strings.SplitSeq(v, ",") {
		tok = strings.Trim(tok, " \t")
		n, ok := parseDecimal(tok)
		if !ok {
			return errHead(failure.InvalidFraming, "invalid Content-Length "+failure.Quote([]byte(v)))
		}
		if fr.clSeen && n != fr.cl {
			return errHead(failure.InvalidFraming, "conflicting Content-Length values "+strconv.FormatInt(fr.cl, 10)+" and "+strconv.FormatInt(n, 10))
		}
		fr.cl, fr.clSeen = n, true
	}
	return nil
}

// decide applies RFC 9112 §6.3 to a final response.
func (fr *framing) decide(h *Head, method string) error {
	if fr.te {
		if fr.clSeen {
			// §6.3 rule 3: both present "ought to be handled as an
			// error"; it is the classic smuggling and splitting vector.
			return errHead(failure.InvalidFraming, "both Content-Length and Transfer-Encoding")
		}
		if h.Minor == 0 {
			// §6.1: Transfer-Encoding in an HTTP/1.0 message means the
			// framing is faulty.
			return errHead(failure.InvalidFraming, "Transfer-Encoding in an HTTP/1.0 response")
		}
		if fr.teOther != "" || fr.teChunked != 1 {
			// §7.4: candor sends no TE, so the only coding an upstream
			// may apply is a single chunked (§7.1: never twice).
			return errHead(failure.InvalidFraming, "Transfer-Encoding other than a single chunked")
		}
	}
	if fr.clSeen {
		h.ContentLength = fr.cl
	}
	switch {
	case method == "HEAD", h.Status == 204, h.Status == 304:
		// §6.3 rule 1.
		h.Mode = BodyNone
		if h.Status == 204 {
			h.ContentLength = -1
		}
	case fr.te:
		h.Mode = BodyChunked
	case fr.clSeen:
		h.Mode = BodyLength
	default:
		h.Mode = BodyClose
		h.Close = true
	}
	if h.Minor == 0 && !slices.Contains(fr.connection, "keep-alive") {
		h.Close = true
	}
	return nil
}

// hopByHop are the fields that describe one connection, never forwarded
// (RFC 9110 §7.6.1), plus the framing fields candor regenerates itself.
var hopByHop = [...]string{
	"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
	"Transfer-Encoding", "Upgrade", "Content-Length",
}

// dropHopByHop removes hop-by-hop fields and those named in Connection, in
// place.
func dropHopByHop(fields []Field, connection []string) []Field {
	out := fields[:0]
next:
	for _, f := range fields {
		for _, h := range hopByHop {
			if strings.EqualFold(f.Name, h) {
				continue next
			}
		}
		for _, c := range connection {
			if strings.EqualFold(f.Name, c) {
				continue next
			}
		}
		out = append(out, f)
	}
	return out
}

// keepAliveTimeout extracts timeout=N from a Keep-Alive value.
func keepAliveTimeout(v string) int {
	for tok := range strings.SplitSeq(v, ",") {
		tok = strings.Trim(tok, " \t")
		if len(tok) > 8 && strings.EqualFold(tok[:8], "timeout=") {
			if n, ok := parseDecimal(tok[8:]); ok && n < 1<<20 {
				return int(n)
			}
		}
	}
	return 0
}

// parseDecimal parses 1*DIGIT into a non-negative int64, rejecting signs,
// spaces, empty input and overflow.
func parseDecimal(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	for len(s) > 1 && s[0] == '0' {
		s = s[1:] // leading zeros never overflow
	}
	if len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
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

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

// isFieldVChar reports VCHAR / obs-text (RFC 9110 §5.5).
func isFieldVChar(b byte) bool { return b > 0x20 && b != 0x7f }

// isTchar reports the token characters of RFC 9110 §5.6.2.
func isTchar(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	switch b {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}
