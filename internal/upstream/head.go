package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
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

// headReader reads one response head from br under limits, in buffers it
// takes from, and gives back to, a [headScratch].
//
// The names and values of the fields kept are copied into arena as they are
// read, and spans says where each one lies; once the head is complete, one
// string conversion makes all of them (names common enough to be in
// [commonNames] take no room). A head thus costs one allocation for its
// strings, whatever its number of fields.
type headReader struct {
	br      *bufio.Reader
	lim     Limits
	used    int // bytes of the head so far
	scratch []byte
	arena   []byte
	spans   []span
}

// span locates a kept field's name and value in headReader.arena: name
// [n0, n1), or n0 < 0 when the name is a common one set at once; value
// [v0, v1).
type span struct{ n0, n1, v0, v1 int }

// errHead builds a head-phase error of kind k.
func errHead(k failure.Kind, detail string) error { return failure.New(k, detail) }

// readHead reads and validates a complete response head, skipping interim
// 1xx responses (RFC 9110 §15.2). method is the request's method: a response
// to HEAD has no body (RFC 9112 §6.3 rule 1). upgrade is the request's
// Upgrade field, empty when it asked for none: a 101 (Switching Protocols)
// is a final head only in answer to one, and only to a protocol it offered.
func readHead(br *bufio.Reader, lim Limits, method, upgrade string) (*Head, error) {
	h := &Head{Fields: make([]Field, 0, attemptFields)}
	if err := readHeadInto(h, new(headScratch), br, lim, method, upgrade); err != nil {
		return nil, err
	}
	return h, nil
}

// headScratch is the reusable memory of head parsing. Each connection
// keeps one, so that reading a head allocates only its strings; nothing
// that readHeadInto returns refers to it.
type headScratch struct {
	line  []byte // a line longer than the read buffer
	arena []byte
	spans []span
}

// maxScratch bounds the scratch memory a connection keeps between heads;
// a rare larger head is parsed in memory that is then dropped.
const maxScratch = 8 << 10

// keep saves hr's buffers, emptied, for the next head.
func (hs *headScratch) keep(hr *headReader) {
	if cap(hr.scratch) <= maxScratch && cap(hr.arena) <= maxScratch && cap(hr.spans) <= maxScratch/32 {
		hs.line, hs.arena, hs.spans = hr.scratch[:0], hr.arena[:0], hr.spans[:0]
	} else {
		*hs = headScratch{}
	}
}

// readHeadInto is readHead into h, which it overwrites, parsing in hs and
// reusing the capacity of h.Fields: the transport gives each attempt room
// for the usual number of fields, so that a head costs one allocation, for
// its strings.
func readHeadInto(h *Head, hs *headScratch, br *bufio.Reader, lim Limits, method, upgrade string) error {
	if hs.arena == nil {
		// Room for a typical head, kept by the connection from now on.
		hs.arena, hs.spans = make([]byte, 0, 1024), make([]span, 0, attemptFields)
	}
	hr := headReader{br: br, lim: lim, scratch: hs.line[:0], arena: hs.arena[:0], spans: hs.spans[:0]}
	err := hr.readFinal(h, method, upgrade)
	hs.keep(&hr)
	return err
}

// readFinal reads heads into h until the final one.
func (hr *headReader) readFinal(h *Head, method, upgrade string) error {
	fields := h.Fields[:0]
	for range maxInterim + 1 {
		*h = Head{ContentLength: -1, Fields: fields}
		if err := hr.readOne(h, method, upgrade); err != nil {
			*h = Head{}
			return err
		}
		if h.Status >= 200 || h.Status == 101 {
			h.Size = hr.used
			return nil
		}
		// An interim response: its fields were validated; drop it.
		fields = h.Fields[:0]
	}
	*h = Head{}
	return errHead(failure.MalformedStatusLine, "more than "+strconv.Itoa(maxInterim)+" interim 1xx responses")
}

// lineName names line n of a head in errors: the status line (0) or a
// header line (from 1).
func lineName(n int) string {
	if n == 0 {
		return "status line"
	}
	return "header line " + strconv.Itoa(n)
}

// readLine returns the next line without its CRLF: the status line when n
// is 0, header line n otherwise. RFC 9112 §2.2: candor requires CRLF; a
// bare LF (which the RFC lets recipients accept) and a bare CR (which it
// requires to be rejected or replaced) are both errors here, reported as
// kind k.
func (hr *headReader) readLine(k failure.Kind, n int) ([]byte, error) {
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
			return nil, errHead(k, lineName(n)+" ends in a bare LF (RFC 9112 §2.2): "+failure.Quote(line))
		}
		line = line[:len(line)-2]
		if i := bytes.IndexByte(line, '\r'); i >= 0 {
			return nil, errHead(k, lineName(n)+" contains a bare CR (RFC 9112 §2.2): "+failure.Quote(line))
		}
		return line, nil
	}
}

// readOne reads one status line and header section into h, which holds
// Head{ContentLength: -1} and an empty Fields.
//
// The framing fields (Content-Length, Transfer-Encoding, Connection,
// Keep-Alive, Upgrade) are noted as they come and never kept: they are
// hop-by-hop, and Fields would lose them anyway.
func (hr *headReader) readOne(h *Head, method, upgrade string) error {
	if hr.used == 0 {
		if err := hr.sniff(); err != nil {
			return err
		}
	}
	line, err := hr.readLine(failure.MalformedStatusLine, 0)
	if err != nil {
		return err
	}
	if err := parseStatusLine(line, h); err != nil {
		return err
	}
	hr.arena, hr.spans = hr.arena[:0], hr.spans[:0]
	var fr framing
	for n := 0; ; n++ {
		line, err := hr.readLine(failure.MalformedHeader, n+1)
		if err != nil {
			return err
		}
		if len(line) == 0 {
			break
		}
		if n >= hr.lim.Fields {
			return errHead(failure.HeadTooLarge, "more than "+strconv.Itoa(hr.lim.Fields)+" header fields")
		}
		name, value, err := parseField(line, n+1)
		if err != nil {
			return err
		}
		if k := framingOf(name); k != notFraming {
			if err := fr.note(k, value, h); err != nil {
				return err
			}
			continue
		}
		hr.keep(h, name, value)
	}
	hr.strings(h)
	if h.Status == 101 {
		if err := fr.switching(h, upgrade); err != nil {
			return err
		}
		h.Fields = dropHopByHop(h.Fields, fr.connection)
		return nil
	}
	if h.Status < 200 {
		return nil
	}
	if err := fr.decide(h, method); err != nil {
		return err
	}
	h.Fields = dropHopByHop(h.Fields, fr.connection)
	return nil
}

// keep adds a field to h.Fields, its strings to be set by strings.
func (hr *headReader) keep(h *Head, name, value []byte) {
	sp := span{n0: -1}
	f := Field{Name: commonNames[string(name)]}
	if f.Name == "" {
		sp.n0 = len(hr.arena)
		hr.arena = append(hr.arena, name...)
		sp.n1 = len(hr.arena)
	}
	sp.v0 = len(hr.arena)
	hr.arena = append(hr.arena, value...)
	sp.v1 = len(hr.arena)
	h.Fields = append(h.Fields, f)
	hr.spans = append(hr.spans, sp)
}

// strings sets the names and values of the fields kept, from one string.
func (hr *headReader) strings(h *Head) {
	if len(hr.arena) == 0 {
		return
	}
	all := string(hr.arena)
	for i, sp := range hr.spans {
		f := &h.Fields[i]
		if sp.n0 >= 0 {
			f.Name = all[sp.n0:sp.n1]
		}
		f.Value = all[sp.v0:sp.v1]
	}
}

// commonNames interns field names as commonly sent (canonical, and lower
// case as HTTP/2-minded servers send them), so that they cost no copy.
// It is never modified.
var commonNames = func() map[string]string {
	names := []string{
		"Accept-Ranges", "Access-Control-Allow-Credentials", "Access-Control-Allow-Headers",
		"Access-Control-Allow-Methods", "Access-Control-Allow-Origin", "Access-Control-Expose-Headers",
		"Access-Control-Max-Age", "Age", "Allow", "Alt-Svc", "Cache-Control", "Content-Disposition",
		"Content-Encoding", "Content-Language", "Content-Location", "Content-Range",
		"Content-Security-Policy", "Content-Type", "Cross-Origin-Embedder-Policy",
		"Cross-Origin-Opener-Policy", "Cross-Origin-Resource-Policy", "Date", "ETag", "Etag",
		"Expires", "Last-Modified", "Link", "Location", "Permissions-Policy", "Pragma",
		"Referrer-Policy", "Retry-After", "Server", "Server-Timing", "Set-Cookie",
		"Strict-Transport-Security", "Timing-Allow-Origin", "Vary", "Via", "WWW-Authenticate",
		"Www-Authenticate", "X-Content-Type-Options", "X-Frame-Options", "X-Powered-By",
		"X-Request-Id", "X-Xss-Protection", "X-XSS-Protection",
	}
	m := make(map[string]string, 2*len(names))
	for _, n := range names {
		m[n] = n
		l := strings.ToLower(n)
		m[l] = l
	}
	return m
}()

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
	h.Reason = reason(h.Status, rest[1:])
	return nil
}

// reason returns the reason phrase b of status as a string, without a copy
// when it is the standard one.
func reason(status int, b []byte) string {
	if std := http.StatusText(status); string(b) == std {
		return std
	}
	return string(b)
}

// parseField parses RFC 9112 §5, returning the name and the value (which
// alias line):
//
//	field-line = field-name ":" OWS field-value OWS
//
// §5.1: no whitespace is allowed between the name and the colon (a proxy
// must reject or repair; candor rejects). §5.2: obs-fold is rejected with a
// 502, one of the two options the RFC gives a proxy. RFC 9110 §5.5: a value
// with CR, LF, NUL or other control characters is invalid.
func parseField(line []byte, n int) (name, value []byte, err error) {
	bad := func(why string) ([]byte, []byte, error) {
		return nil, nil, errHead(failure.MalformedHeader, lineName(n)+": "+why+": "+failure.Quote(line))
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
	name = line[:colon]
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
	return name, v, nil
}

// framing accumulates the fields that decide the body's length and the
// connection's fate.
type framing struct {
	cl         int64 // -1 until seen
	clSeen     bool
	te         bool
	teChunked  int      // chunked codings seen
	teOther    bool     // another coding seen
	connection []string // lower-case tokens of Connection
	upgrade    []string // Upgrade field values, kept for a 101
}

// framingField names the fields that framing notes.
type framingField uint8

const (
	notFraming framingField = iota
	fieldContentLength
	fieldTransferEncoding
	fieldConnection
	fieldKeepAlive
	fieldUpgrade
)

// framingOf returns which framing field name is, case-insensitively.
func framingOf(name []byte) framingField {
	switch len(name) {
	case len("Content-Length"):
		if bytes.EqualFold(name, []byte("Content-Length")) {
			return fieldContentLength
		}
	case len("Transfer-Encoding"):
		if bytes.EqualFold(name, []byte("Transfer-Encoding")) {
			return fieldTransferEncoding
		}
	case len("Connection"): // and Keep-Alive
		switch {
		case bytes.EqualFold(name, []byte("Connection")):
			return fieldConnection
		case bytes.EqualFold(name, []byte("Keep-Alive")):
			return fieldKeepAlive
		}
	case len("Upgrade"):
		if bytes.EqualFold(name, []byte("Upgrade")) {
			return fieldUpgrade
		}
	}
	return notFraming
}

// note records framing field k with value v (which aliases the read
// buffer, and is copied where kept).
func (fr *framing) note(k framingField, v []byte, h *Head) error {
	switch k {
	case fieldContentLength:
		return fr.noteContentLength(v)
	case fieldTransferEncoding:
		fr.te = true
		for tok := range bytes.SplitSeq(v, []byte(",")) {
			tok = bytes.Trim(tok, " \t")
			switch {
			case len(tok) == 0:
				// RFC 9110 §5.6.1: empty list elements are ignored.
			case bytes.EqualFold(tok, []byte("chunked")):
				fr.teChunked++
			default:
				fr.teOther = true
			}
		}
	case fieldConnection:
		for tok := range bytes.SplitSeq(v, []byte(",")) {
			tok = bytes.Trim(tok, " \t")
			if len(tok) == 0 {
				continue
			}
			opt := connectionOption(tok)
			if opt == "close" {
				h.Close = true
			}
			fr.connection = append(fr.connection, opt)
		}
	case fieldKeepAlive:
		h.KeepAlive = keepAliveTimeout(v)
	case fieldUpgrade:
		fr.upgrade = append(fr.upgrade, string(v))
	}
	return nil
}

// connectionOption returns a Connection token in lower case, without a
// copy for the common ones.
func connectionOption(tok []byte) string {
	for _, c := range [...]string{"close", "keep-alive", "upgrade"} {
		if bytes.EqualFold(tok, []byte(c)) {
			return c
		}
	}
	return strings.ToLower(string(tok))
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
func (fr *framing) noteContentLength(v []byte) error {
	for tok := range bytes.SplitSeq(v, []byte(",")) {
		tok = bytes.Trim(tok, " \t")
		n, ok := parseDecimal(tok)
		if !ok {
			return errHead(failure.InvalidFraming, "invalid Content-Length "+failure.Quote(v))
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
		if fr.teOther || fr.teChunked != 1 {
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
func keepAliveTimeout(v []byte) int {
	for tok := range bytes.SplitSeq(v, []byte(",")) {
		tok = bytes.Trim(tok, " \t")
		if len(tok) > 8 && bytes.EqualFold(tok[:8], []byte("timeout=")) {
			if n, ok := parseDecimal(tok[8:]); ok && n < 1<<20 {
				return int(n)
			}
		}
	}
	return 0
}

// parseDecimal parses 1*DIGIT into a non-negative int64, rejecting signs,
// spaces, empty input and overflow.
func parseDecimal[T string | []byte](s T) (int64, bool) {
	if len(s) == 0 {
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
