package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"candor/internal/failure"
	"candor/internal/upstream"
)

var errEOF = io.EOF

// buffered implements strict mode (DESIGN §5): the whole body is read and
// validated before a status is committed, so a broken body becomes a real
// 502 (or 504 for a stall) instead of a cut-off response.
func (h *Handler) buffered(x *exchange, s *Strict, resp *upstream.Response) {
	body := resp.Body
	defer body.Close()
	if resp.Mode == upstream.BodyLength && resp.ContentLength > s.Buffer {
		// Known too large: fail before reading it.
		h.fail(x, x.strictError(failure.ResponseTooLarge, "Content-Length "+itoa(resp.ContentLength)+" exceeds strict.buffer "+itoa(s.Buffer), resp))
		return
	}
	// The body is read into a pooled buffer when it fits, which is given
	// back once the response is written (nothing keeps a reference: the
	// failure details quote copies).
	bp := h.bufs.Get().(*[]byte)
	defer h.bufs.Put(bp)
	data, err := readLimited(body, s.Buffer, (*bp)[:0], resp.ContentLength)
	if err != nil {
		fe, ok := errors.AsType[*failure.Error](err)
		if !ok {
			fe = x.strictError(failure.ResponseTooLarge, "body exceeds strict.buffer "+itoa(s.Buffer)+" bytes", resp)
		}
		h.fail(x, fe)
		return
	}
	if s.JSON && resp.Mode != upstream.BodyNone && isJSON(resp.Fields) {
		if detail := jsonError(data); detail != "" {
			h.fail(x, x.strictError(failure.ContractViolation, detail, resp))
			return
		}
	}
	length := resp.ContentLength
	if resp.Mode != upstream.BodyNone {
		// The body was de-chunked: declare its exact length. Trailers
		// are dropped, as a Content-Length response cannot carry them.
		length = int64(len(data))
	}
	x.copyHead(resp, length)
	x.wroteHeader = true
	x.w.WriteHeader(resp.Status)
	if _, err := x.w.Write(data); err != nil {
		x.clientGone(err)
		return
	}
	x.rec.BytesOut = int64(len(data))
}

// strictError builds a failure found by strict mode, attributed to the
// attempt that produced resp.
func (x *exchange) strictError(k failure.Kind, detail string, resp *upstream.Response) *failure.Error {
	fe := failure.New(k, detail)
	fe.Upstream = x.rec.Upstream
	fe.Target = x.rec.Target
	fe.Attempt = max(x.rec.Attempts, 1)
	fe.Reused = resp.Reused
	fe.BytesSent, fe.BytesReceived = resp.Body.Wire()
	return fe
}

// errTooLarge reports a body over the strict buffer.
var errTooLarge = errors.New("body exceeds the strict buffer")

// readLimited reads body to io.EOF, failing with errTooLarge past limit
// bytes (having read limit+1 of them, no more). It reads into buf's
// capacity while the body fits, and into a larger slice, allocated once
// when size (the declared length, or -1) says how large, when it does not.
func readLimited(body io.Reader, limit int64, buf []byte, size int64) ([]byte, error) {
	data := buf[:0]
	for {
		if len(data) == cap(data) {
			want := max(2*cap(data), 512)
			if size >= int64(len(data)) {
				// One byte more than declared: the read that finds the end.
				want = max(want, int(min(size, limit)+1))
			}
			data = append(make([]byte, 0, min(int64(want), limit+1)), data...)
		}
		n, err := body.Read(data[len(data):min(int64(cap(data)), limit+1)])
		data = data[:len(data)+n]
		if int64(len(data)) > limit {
			return nil, errTooLarge
		}
		if err == io.EOF {
			return data, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// isJSON reports a JSON media type (RFC 8259 §11, RFC 6839 §3.1):
// application/json or any */*+json.
func isJSON(fields []upstream.Field) bool {
	for _, f := range fields {
		if !strings.EqualFold(f.Name, "Content-Type") {
			continue
		}
		// The media type is what mime.ParseMediaType would return
		// (the value before any ";", trimmed, in lower case), whether or
		// not the parameters parse: a type with a broken parameter
		// ("application/json; charset") is still that type, and is
		// validated rather than waved through.
		base, _, _ := strings.Cut(f.Value, ";")
		mt := strings.TrimSpace(base)
		if !isASCII(mt) {
			mt = strings.TrimSpace(strings.ToLower(base))
		}
		return asciiEqualFold(mt, "application/json") || len(mt) >= 5 && asciiEqualFold(mt[len(mt)-5:], "+json")
	}
	return false
}

// isASCII reports whether s is all ASCII, so that comparing it in lower
// case needs no copy.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// asciiEqualFold reports whether s, in ASCII lower case, equals lower (all
// lower case).
func asciiEqualFold(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// jsonError returns why data is not one valid JSON value, or "" when it
// is.
func jsonError(data []byte) string {
	// validJSON decides as json.Valid does, faster; json.Valid has the
	// last word on a rejection, whose detail comes from encoding/json.
	if validJSON(data) || json.Valid(data) {
		return ""
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return "empty body declared as JSON"
	}
	var v json.RawMessage
	err := json.Unmarshal(data, &v)
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return "invalid JSON at byte " + itoa(se.Offset) + ": " + se.Error() + ": near " + failure.Quote(around(data, se.Offset))
	}
	if err != nil {
		return "invalid JSON: " + err.Error()
	}
	return "invalid JSON"
}

// around returns a short window of data ending at offset.
func around(data []byte, off int64) []byte {
	lo := max(off-20, 0)
	hi := min(off+20, int64(len(data)))
	return data[lo:hi]
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func panicText(v any) string {
	if err, ok := v.(error); ok {
		return err.Error()
	}
	return fmt.Sprint(v)
}
