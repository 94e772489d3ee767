package fault

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// Header values the handlers use.
const (
	ctypeJSON = "application/json"
	ctypeText = "text/plain; charset=utf-8"
)

// handle answers r. It reports whether the connection stays open for another
// request; if not, the caller closes it gracefully.
func (c *conn) handle(r *request) bool {
	if c.s.script != nil {
		c.write(c.s.script.Bytes)
		return false
	}
	switch p := r.path; {
	case strings.HasPrefix(p, "/script/"):
		s, ok := Lookup(strings.TrimPrefix(p, "/script/"))
		if !ok {
			return c.respond(r, http.StatusNotFound, ctypeText, []byte("no such script\n"))
		}
		c.write(s.Bytes)
		return false
	case p == "/ok":
		return c.respondOK(r)
	case strings.HasPrefix(p, "/status/"):
		code, err := strconv.Atoi(strings.TrimPrefix(p, "/status/"))
		if err != nil || code < 200 || code > 599 {
			return c.respond(r, http.StatusBadRequest, ctypeText, []byte("status must be 200-599\n"))
		}
		return c.respond(r, code, ctypeJSON, []byte(`{"status":`+strconv.Itoa(code)+`}`))
	case p == "/close":
		return false
	case p == "/reset":
		// SO_LINGER 0: close(2) discards unsent data and sends RST.
		_ = c.raw.SetLinger(0)
		_ = c.raw.Close()
		return false
	case p == "/stall-head" || p == "/slow-head":
		if !c.stall(r.duration("ms", 0)) {
			return false
		}
		return c.respondOK(r)
	case p == "/stall-body":
		c.write([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n0123456789"))
		c.stall(r.duration("ms", 0))
		return false
	case p == "/big":
		return c.respondBig(r, r.number("bytes", 1024, maxBodyBytes))
	case p == "/chunked":
		return c.respondChunked(r, r.number("n", 3, 10_000))
	case p == "/echo":
		r.BodyLen = max(r.BodyLen, int64(len(r.Body)))
		b, err := json.Marshal(r.Received)
		if err != nil {
			return c.respond(r, http.StatusInternalServerError, ctypeText, []byte(err.Error()))
		}
		return c.respond(r, http.StatusOK, ctypeJSON, b)
	default:
		return c.respond(r, http.StatusNotFound, ctypeText, []byte("not found\n"))
	}
}

func (c *conn) respondOK(r *request) bool {
	b, err := json.Marshal(struct {
		OK   bool   `json:"ok"`
		Path string `json:"path"`
	}{true, r.path})
	if err != nil {
		return false
	}
	return c.respond(r, http.StatusOK, ctypeJSON, b)
}

// respond writes a complete, valid response. 204 and 304 carry neither
// Content-Length nor content; a response to HEAD carries the Content-Length
// of the GET response but no content (RFC 9110 §9.3.2, §8.6).
func (c *conn) respond(r *request, status int, ctype string, body []byte) bool {
	noContent := status == http.StatusNoContent || status == http.StatusNotModified
	if status == http.StatusResetContent {
		body = nil
	}
	c.writeStatusLine(status)
	if !noContent {
		c.writeField("Content-Type", ctype)
		c.writeField("Content-Length", strconv.Itoa(len(body)))
	}
	c.endHead(r)
	if !noContent && r.Method != http.MethodHead {
		_, _ = c.bw.Write(body)
	}
	return c.flush() && r.keepAlive
}

func (c *conn) respondBig(r *request, n int64) bool {
	c.writeStatusLine(http.StatusOK)
	c.writeField("Content-Type", "application/octet-stream")
	c.writeField("Content-Length", strconv.FormatInt(n, 10))
	c.endHead(r)
	if r.Method != http.MethodHead {
		chunk := []byte(strings.Repeat("x", 32<<10))
		for n > 0 {
			m := min(n, int64(len(chunk)))
			if _, err := c.bw.Write(chunk[:m]); err != nil {
				return false
			}
			n -= m
		}
	}
	return c.flush() && r.keepAlive
}

func (c *conn) respondChunked(r *request, n int64) bool {
	c.writeStatusLine(http.StatusOK)
	c.writeField("Content-Type", ctypeText)
	c.writeField("Transfer-Encoding", "chunked")
	c.endHead(r)
	if r.Method != http.MethodHead {
		for i := range n {
			data := "chunk " + strconv.FormatInt(i, 10) + "\n"
			_, _ = c.bw.WriteString(strconv.FormatInt(int64(len(data)), 16) + "\r\n" + data + "\r\n")
		}
		_, _ = c.bw.WriteString("0\r\n\r\n")
	}
	return c.flush() && r.keepAlive
}

func (c *conn) writeBadRequest(e *badRequest) {
	body := e.msg + "\n"
	c.writeStatusLine(e.status)
	c.writeField("Content-Type", ctypeText)
	c.writeField("Content-Length", strconv.Itoa(len(body)))
	c.writeField("Connection", "close")
	_, _ = c.bw.WriteString("\r\n" + body)
	c.flush()
}

func (c *conn) writeStatusLine(status int) {
	reason := http.StatusText(status)
	if reason == "" {
		reason = "Status " + strconv.Itoa(status)
	}
	_, _ = c.bw.WriteString("HTTP/1.1 " + strconv.Itoa(status) + " " + reason + "\r\n")
}

func (c *conn) writeField(name, value string) {
	_, _ = c.bw.WriteString(name + ": " + value + "\r\n")
}

// endHead ends the head, announcing the close if r does not keep the
// connection alive (RFC 9112 §9.6).
func (c *conn) endHead(r *request) {
	if !r.keepAlive {
		c.writeField("Connection", "close")
	}
	_, _ = c.bw.WriteString("\r\n")
}

// write writes b as it is and flushes.
func (c *conn) write(b []byte) {
	_, _ = c.bw.Write(b)
	c.flush()
}

func (c *conn) flush() bool { return c.bw.Flush() == nil }
