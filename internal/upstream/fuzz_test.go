package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"candor/internal/failure"
)

// fuzzLimits are small enough for the fuzzer to reach.
var fuzzLimits = Limits{Bytes: 2048, Fields: 24}

// addHeadSeeds seeds a head fuzzer with every TestReadHead row.
func addHeadSeeds(f *testing.F) {
	for _, tc := range headCases() {
		f.Add([]byte(tc.in+tc.body), tc.method == "HEAD")
	}
	f.Add([]byte(benchHead), false)
}

// parseBoth parses data with a normal and with a 16-byte read buffer.
func parseBoth(data []byte, lim Limits, method string) (h, h16 *Head, err, err16 error, consumed int) {
	rd := bytes.NewReader(data)
	br := bufio.NewReaderSize(rd, 4096)
	h, err = readHead(br, lim, method, "")
	consumed = len(data) - br.Buffered() - rd.Len()
	h16, err16 = readHead(bufio.NewReaderSize(bytes.NewReader(data), 16), lim, method, "")
	return h, h16, err, err16, consumed
}

// FuzzReadHead: readHead never panics, answers the same whatever the read
// buffer's size, and every Head it returns is one a proxy can trust.
func FuzzReadHead(f *testing.F) {
	addHeadSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte, head bool) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		h, h16, err, err16, consumed := parseBoth(data, fuzzLimits, method)
		if err != nil {
			if h != nil {
				t.Fatalf("Head %+v returned with error %v", h, err)
			}
			if errors.Is(err, io.EOF) && failure.KindOf(err) == failure.KindUnknown {
				if len(data) != 0 {
					t.Fatalf("plain io.EOF after %d bytes", len(data))
				}
				return
			}
			fe, ok := errors.AsType[*failure.Error](err)
			if !ok || fe.Phase != failure.PhaseReadHead || fe.Detail == "" {
				t.Fatalf("error %v (%T) is not a read_head *failure.Error with a detail", err, err)
			}
			fe16, ok := errors.AsType[*failure.Error](err16)
			if !ok || fe16.Kind != fe.Kind || fe16.Detail != fe.Detail {
				t.Fatalf("16-byte buffer: %v; 4096-byte buffer: %v", err16, err)
			}
			return
		}
		if err16 != nil {
			t.Fatalf("16-byte buffer: %v; 4096-byte buffer accepted", err16)
		}
		if diff := cmp.Diff(h, h16, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("Heads differ by read buffer (-4096 +16):\n%s", diff)
		}
		checkHeadInvariants(t, h, method, consumed)
	})
}

func checkHeadInvariants(t *testing.T, h *Head, method string, consumed int) {
	t.Helper()
	if h.Status < 200 || h.Status > 599 {
		t.Errorf("final status %d outside 200-599", h.Status)
	}
	if h.Minor < 0 || h.Minor > 9 {
		t.Errorf("minor version %d", h.Minor)
	}
	if h.Size != consumed || h.Size > fuzzLimits.Bytes {
		t.Errorf("Size %d, consumed %d, limit %d", h.Size, consumed, fuzzLimits.Bytes)
	}
	if len(h.Fields) > fuzzLimits.Fields {
		t.Errorf("%d fields over the limit", len(h.Fields))
	}
	for _, f := range h.Fields {
		if f.Name == "" || strings.IndexFunc(f.Name, func(r rune) bool { return r > 0x7f || !isTchar(byte(r)) }) >= 0 {
			t.Errorf("field name %q is not a token", f.Name)
		}
		if strings.ContainsAny(f.Value, "\r\n\x00") || strings.IndexFunc(f.Value, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) >= 0 {
			t.Errorf("field value %q has control characters", f.Value)
		}
		if f.Value != strings.Trim(f.Value, " \t") {
			t.Errorf("field value %q not trimmed", f.Value)
		}
		for _, hop := range hopByHop {
			if strings.EqualFold(f.Name, hop) {
				t.Errorf("hop-by-hop field %q kept", f.Name)
			}
		}
	}
	noBody := method == "HEAD" || h.Status == 204 || h.Status == 304
	switch {
	case noBody != (h.Mode == BodyNone):
		t.Errorf("mode %v for status %d to %s", h.Mode, h.Status, method)
	case h.Mode == BodyLength && h.ContentLength < 0:
		t.Errorf("BodyLength with ContentLength %d", h.ContentLength)
	case h.Mode == BodyChunked && (h.ContentLength != -1 || h.Minor == 0):
		t.Errorf("chunked with ContentLength %d, minor %d", h.ContentLength, h.Minor)
	case h.Mode == BodyClose && (!h.Close || h.ContentLength != -1):
		t.Errorf("close-delimited with Close %v, ContentLength %d", h.Close, h.ContentLength)
	case h.Status == 204 && h.ContentLength != -1:
		t.Errorf("204 with ContentLength %d", h.ContentLength)
	case h.ContentLength < -1:
		t.Errorf("ContentLength %d", h.ContentLength)
	case h.Minor == 0 && !h.Close && h.Mode == BodyClose:
		t.Errorf("HTTP/1.0 close-delimited body on a kept connection")
	case h.KeepAlive < 0 || h.KeepAlive >= 1<<20:
		t.Errorf("KeepAlive %d", h.KeepAlive)
	}
}

// maxDiffHeads bounds the heads the net/http side of the differential
// reads: one final response after at most maxInterim interim ones, as
// readHead does.
const maxDiffHeads = maxInterim + 1

// readResponseStd reads a response the way a client built on net/http
// would: http.ReadResponse, skipping 1xx responses other than 101. It
// returns how many bytes of data the heads took.
func readResponseStd(data []byte, method string) (*http.Response, int, error) {
	rd := bytes.NewReader(data)
	br := bufio.NewReader(rd)
	req := &http.Request{Method: method}
	for range maxDiffHeads {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return nil, 0, err
		}
		if resp.StatusCode < 100 || resp.StatusCode >= 200 || resp.StatusCode == 101 {
			return resp, len(data) - br.Buffered() - rd.Len(), nil
		}
	}
	return nil, 0, errors.New("too many interim responses")
}

// FuzzHeadDifferential compares readHead with net/http's http.ReadResponse.
// Where both accept, they must agree on the status, the version, the
// framing and the end-to-end fields. Where only net/http accepts, the input
// must break a rule candor documents as stricter (documentedStrictness);
// where only candor accepts, a documented leniency (documentedLeniency).
func FuzzHeadDifferential(f *testing.F) {
	addHeadSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte, head bool) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		lim := Limits{Bytes: 1 << 20, Fields: 1 << 12}
		h, err := readHead(bufio.NewReader(bytes.NewReader(data)), lim, method, "")
		std, stdSize, stdErr := readResponseStd(data, method)
		switch {
		case err != nil && stdErr != nil:
			return
		case err != nil:
			if rule := documentedStrictness(data[:stdSize]); rule == "" {
				t.Fatalf("candor rejects what net/http accepts, under no documented rule: %v\ninput: %q", err, data)
			}
		case stdErr != nil:
			if rule := documentedLeniency(data[:h.Size], method); rule == "" {
				t.Fatalf("candor accepts what net/http rejects (%v), under no documented rule\ninput: %q", stdErr, data)
			}
		default:
			compareStd(t, h, std, data[:h.Size], method)
		}
	})
}

// compareStd checks that a Head agrees with net/http's reading of it.
func compareStd(t *testing.T, h *Head, std *http.Response, head []byte, method string) {
	t.Helper()
	if h.Status != std.StatusCode || std.ProtoMajor != 1 || h.Minor != std.ProtoMinor {
		t.Fatalf("status %d HTTP/1.%d; net/http: %d HTTP/%d.%d\ninput: %q", h.Status, h.Minor, std.StatusCode, std.ProtoMajor, std.ProtoMinor, head)
	}
	chunked := slices.Equal(std.TransferEncoding, []string{"chunked"})
	switch h.Mode {
	case BodyLength:
		if chunked || std.ContentLength != h.ContentLength {
			t.Fatalf("Content-Length %d; net/http: %d (chunked %v)\ninput: %q", h.ContentLength, std.ContentLength, chunked, head)
		}
	case BodyChunked:
		if !chunked {
			t.Fatalf("chunked; net/http: %v\ninput: %q", std.TransferEncoding, head)
		}
	case BodyClose:
		if chunked || std.ContentLength != -1 || !std.Close {
			t.Fatalf("close-delimited; net/http: length %d, chunked %v, close %v\ninput: %q", std.ContentLength, chunked, std.Close, head)
		}
	}
	if h.Close != std.Close {
		t.Fatalf("Close %v; net/http: %v\ninput: %q", h.Close, std.Close, head)
	}
	want := http.Header{}
	for _, f := range h.Fields {
		want.Add(f.Name, f.Value)
	}
	got := std.Header.Clone()
	for _, name := range hopByHop {
		got.Del(name)
	}
	for _, name := range connectionTokens(head) {
		got.Del(name)
	}
	// net/http adds Cache-Control: no-cache beside Pragma: no-cache
	// (HTTP/1.0 compatibility, RFC 7234 §5.4).
	if want.Get("Cache-Control") == "" && got.Get("Cache-Control") == "no-cache" && got.Get("Pragma") == "no-cache" {
		got.Del("Cache-Control")
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("end-to-end fields (-candor +net/http):\n%s\ninput: %q", diff, head)
	}
}

// connectionTokens returns the Connection tokens of the final head in a
// head region that readHead accepted (so lines end in CRLF).
func connectionTokens(head []byte) []string {
	var toks []string
	for line := range strings.SplitSeq(string(head), "\r\n") {
		if strings.HasPrefix(line, "HTTP/") {
			toks = nil // a new head
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(name, "Connection") {
			for tok := range strings.SplitSeq(value, ",") {
				toks = append(toks, strings.Trim(tok, " \t"))
			}
		}
	}
	return toks
}

// rawHead is one response head as split by a lenient scan: the status line
// and the field lines, line endings removed.
type rawHead struct {
	status string
	fields []string
}

func (r rawHead) code() int {
	if len(r.status) < 12 {
		return -1
	}
	_, rest, _ := strings.Cut(r.status, " ")
	n, err := strconv.Atoi(strings.TrimLeft(rest, " ")[:min(3, len(strings.TrimLeft(rest, " ")))])
	if err != nil {
		return -1
	}
	return n
}

func (r rawHead) values(name string) []string {
	var vs []string
	for _, l := range r.fields {
		n, v, ok := strings.Cut(l, ":")
		if ok && strings.EqualFold(strings.TrimRight(n, " \t"), name) {
			vs = append(vs, strings.Trim(v, " \t\r"))
		}
	}
	return vs
}

// scanHeads splits a head region into heads, accepting LF or CRLF.
func scanHeads(region []byte) []rawHead {
	var heads []rawHead
	var cur *rawHead
	for line := range strings.SplitSeq(strings.TrimSuffix(string(region), "\n"), "\n") {
		line = strings.TrimSuffix(line, "\r")
		switch {
		case cur == nil:
			heads = append(heads, rawHead{status: line})
			cur = &heads[len(heads)-1]
		case line == "":
			cur = nil
		default:
			cur.fields = append(cur.fields, line)
		}
	}
	return heads
}

func hasCTL(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) >= 0
}

// documentedStrictness names the rule under which candor rejects a head
// region that net/http accepts, or returns "". Every rule is one candor
// applies on purpose (see DESIGN.md §3 and head.go):
func documentedStrictness(region []byte) string {
	for i, b := range region {
		if b == '\n' && (i == 0 || region[i-1] != '\r') {
			return "bare LF line ending (RFC 9112 §2.2)"
		}
		if b == '\r' && (i+1 == len(region) || region[i+1] != '\n') {
			return "bare CR (RFC 9112 §2.2)"
		}
	}
	heads := scanHeads(region)
	if len(heads) > maxInterim+1 {
		return "more than 8 interim responses"
	}
	for _, h := range heads {
		proto, rest, _ := strings.Cut(h.status, " ")
		switch code := h.code(); {
		case proto != "HTTP/1.0" && proto != "HTTP/1.1" && (len(proto) != 8 || !strings.HasPrefix(proto, "HTTP/1.")):
			return "HTTP version other than 1.x (RFC 9112 §2.3)"
		case strings.HasPrefix(rest, " "):
			return "more than one SP after the version (RFC 9112 §4)"
		case code < 100 || code > 599:
			return "status code outside 100-599 (RFC 9110 §15)"
		case code == 101:
			return "101 to a request without Upgrade (RFC 9110 §15.2.2)"
		case hasCTL(rest):
			return "control character in the reason phrase (RFC 9112 §4)"
		}
		for _, l := range h.fields {
			if l[0] == ' ' || l[0] == '\t' {
				return "obs-fold (RFC 9112 §5.2)"
			}
			name, _, _ := strings.Cut(l, ":")
			if strings.HasSuffix(name, " ") || strings.HasSuffix(name, "\t") {
				return "whitespace before the colon (RFC 9112 §5.1)"
			}
			if strings.Contains(name, " ") {
				return "SP inside a field name, which net/http keeps uncanonicalised (RFC 9110 §5.1: a token)"
			}
		}
		cl, te := h.values("Content-Length"), h.values("Transfer-Encoding")
		for _, v := range cl {
			if len(v) > 18 {
				return "Content-Length of more than 18 digits"
			}
		}
		if len(te) > 0 && h.code() >= 200 {
			switch {
			case len(cl) > 0:
				return "Content-Length with Transfer-Encoding (RFC 9112 §6.3 rule 3)"
			case strings.HasPrefix(h.status, "HTTP/1.0"):
				return "Transfer-Encoding in HTTP/1.0 (RFC 9112 §6.1)"
			case len(te) != 1 || !strings.EqualFold(te[0], "chunked"):
				return "Transfer-Encoding other than one chunked (RFC 9112 §6.1)"
			}
		}
	}
	return ""
}

// documentedLeniency names the rule under which candor accepts a head
// region that net/http rejects, or returns "". Each is allowed by the RFC:
func documentedLeniency(region []byte, method string) string {
	heads := scanHeads(region)
	for _, h := range heads {
		cl, te := h.values("Content-Length"), h.values("Transfer-Encoding")
		for _, v := range cl {
			if strings.Contains(v, ",") || v != cl[0] {
				return "Content-Length as a list or in different spellings of one value (RFC 9110 §8.6)"
			}
		}
		if len(te) > 0 && h.code() < 200 {
			return "Transfer-Encoding on an interim response is ignored (RFC 9110 §15.2: no content)"
		}
		for _, v := range te {
			if strings.Contains(v, ",") || v == "" || len(te) > 1 {
				return "empty Transfer-Encoding list elements are ignored (RFC 9110 §5.6.1)"
			}
		}
		if len(te) > 0 {
			for _, v := range h.values("Trailer") {
				for tok := range strings.SplitSeq(v, ",") {
					switch http.CanonicalHeaderKey(strings.Trim(tok, " \t")) {
					case "Transfer-Encoding", "Trailer", "Content-Length":
						return "Trailer naming a framing field: candor drops those trailer fields instead (RFC 9110 §6.5.1)"
					}
				}
			}
		}
	}
	return ""
}

// FuzzChunked feeds arbitrary bytes to the chunked Body reader and
// compares it with net/http/httputil's chunked reader.
func FuzzChunked(f *testing.F) {
	for _, tc := range bodyCases() {
		if _, body, ok := strings.Cut(tc.resp, chunkedHead); ok {
			f.Add([]byte(body))
		}
	}
	f.Add([]byte("5\r\nhello\r\n0\r\n\r\n"))
	f.Add([]byte("5 ;a=b\r\nhello\r\n0\r\n\r\n"))
	f.Add([]byte("0000000000000005\r\nhello\r\n0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		opt := testOptions()
		b, _ := fakeBody(t.Context(), data, BodyChunked, -1, opt)
		got, err := io.ReadAll(b)
		if len(got) > len(data) || b.BytesRead() != int64(len(got)) {
			t.Fatalf("decoded %d bytes (BytesRead %d) from %d", len(got), b.BytesRead(), len(data))
		}
		if err != nil {
			fe, ok := errors.AsType[*failure.Error](err)
			if !ok || fe.Phase != failure.PhaseReadBody || (fe.Kind != failure.MalformedChunk && fe.Kind != failure.TruncatedBody) {
				t.Fatalf("error %v (%T) is not malformed_chunk or truncated_body", err, err)
			}
			if fe.Target != "fake:80" || fe.Attempt != 1 {
				t.Fatalf("error record not filled: %+v", fe)
			}
		}
		ref, refErr := io.ReadAll(httputil.NewChunkedReader(bufio.NewReader(bytes.NewReader(data))))
		switch {
		case err == nil && refErr == nil:
			if !bytes.Equal(got, ref) {
				t.Fatalf("decoded %q; net/http: %q\ninput: %q", got, ref, data)
			}
		case err == nil:
			if rule := documentedChunkLeniency(data); rule == "" {
				t.Fatalf("candor decodes what net/http rejects (%v), under no documented rule\ninput: %q", refErr, data)
			}
		case refErr == nil:
			if rule := documentedChunkStrictness(data); rule == "" {
				t.Fatalf("candor rejects what net/http decodes (%v), under no documented rule\ninput: %q", err, data)
			}
		}
	})
}

// chunkLines walks the chunk-size lines of a chunked body, calling fn with
// each line (CRLF removed). It stops at the last chunk, at a line fn
// rejects, or where the framing breaks.
func chunkLines(data []byte, fn func(line string) (size int64, ok bool)) {
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return
		}
		size, ok := fn(strings.TrimSuffix(string(data[:i]), "\r"))
		if !ok || size <= 0 || int64(len(data)) < int64(i)+1+size+2 {
			return
		}
		data = data[int64(i)+1+size+2:]
	}
}

// documentedChunkStrictness names the rule under which candor rejects a
// chunked body that net/http's reader decodes, or returns "":
func documentedChunkStrictness(data []byte) string {
	rule := ""
	chunkLines(data, func(line string) (int64, bool) {
		digits := len(line) - len(strings.TrimLeft(line, "0123456789abcdefABCDEF"))
		ext := line[digits:]
		size, _ := strconv.ParseUint(line[:min(digits, 16)], 16, 64)
		switch {
		case digits == 0:
			return 0, false // invalid for net/http too
		case digits >= 16:
			rule = "chunk size of 16 or more hex digits"
		case ext != "" && strings.Trim(ext, " \t") == "":
			rule = "whitespace after the chunk size without an extension (RFC 9112 §7.1)"
		case hasCTL(ext):
			rule = "control character in a chunk extension (RFC 9112 §7.1.1)"
		case size == 0:
			// net/http's reader stops at the last chunk; candor reads
			// and validates the trailer section too.
			rule = "trailer section (RFC 9112 §7.1.2): net/http's chunked reader leaves it to its caller"
		}
		return int64(size), rule == ""
	})
	return rule
}

// documentedChunkLeniency names the rule under which candor decodes a
// chunked body that net/http's reader rejects, or returns "":
func documentedChunkLeniency(data []byte) string {
	rule := ""
	chunks, overhead, payload := 0, 0, 0
	chunkLines(data, func(line string) (int64, bool) {
		digits := len(line) - len(strings.TrimLeft(line, "0123456789abcdefABCDEF"))
		size, _ := strconv.ParseUint(line[:digits], 16, 64)
		if ext := line[digits:]; strings.HasPrefix(strings.TrimLeft(ext, " \t"), ";") && ext[0] != ';' {
			rule = "whitespace before a chunk extension (BWS, RFC 9112 §7.1.1)"
		}
		chunks++
		overhead += len(line) + 4
		payload += int(size)
		return int64(size), rule == ""
	})
	if rule == "" && overhead-16*chunks-2*payload > 16<<10 {
		rule = "no limit on chunk-extension overhead (net/http rejects more than 16 KiB of it)"
	}
	return rule
}
