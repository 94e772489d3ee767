package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
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
	data, err := readLimited(body, s.Buffer)
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
	x.copyHead(resp)
	if resp.Mode != upstream.BodyNone {
		// The body was de-chunked: declare its exact length. Trailers
		// are dropped, as a Content-Length response cannot carry them.
		x.w.Header().Set("Content-Length", itoa(int64(len(data))))
	}
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
// bytes.
func readLimited(body io.Reader, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, errTooLarge
	}
	return buf.Bytes(), nil
}

// isJSON reports a JSON media type (RFC 8259 §11, RFC 6839 §3.1):
// application/json or any */*+json.
func isJSON(fields []upstream.Field) bool {
	for _, f := range fields {
		if !strings.EqualFold(f.Name, "Content-Type") {
			continue
		}
		// A type with a broken parameter ("application/json; charset")
		// is still that type: validate it rather than wave it through.
		mt, _, err := mime.ParseMediaType(f.Value)
		if mt == "" && err != nil {
			mt = strings.ToLower(strings.TrimSpace(strings.Split(f.Value, ";")[0]))
		}
		return mt == "application/json" || strings.HasSuffix(mt, "+json")
	}
	return false
}

// jsonError returns why data is not one valid JSON value, or "" when it
// is.
func jsonError(data []byte) string {
	if json.Valid(data) {
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
