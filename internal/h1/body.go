package h1

import (
	"bytes"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"candor/internal/failure"
)

// maxChunkLine bounds a chunk-size line: the size and its extensions,
// CRLF excluded.
const maxChunkLine = 4 << 10

// errBodyDone is returned by a body read after its response was complete.
var errBodyDone = errors.New("h1: read of a request body after its response was complete")

// body is a request's body reader (r.Body), reused by the connection's
// next request. It reads from the connection's buffer, and straight from
// the socket into the caller's slice when that is larger.
//
// Its errors are typed: *failure.Error of kind client_body_invalid (bad
// chunked framing, RFC 9112 §7.1), request_timeout (no bytes for
// body_timeout) or client_canceled (the client closed or reset the
// connection before the end of the body; the connection's context is
// cancelled too). After any of them the connection closes after the
// response.
type body struct {
	c       *conn
	g       *bodyGuard // the request state's; never changes
	active  bool       // belongs to the request being served
	chunked bool
	// left is, identity: the bytes left; chunked: the bytes left of the
	// current chunk's data.
	left   int64
	state  chunkState
	done   bool // read to its end
	err    error
	expect bool // a 100 Continue is owed before the first read
	read   int64
}

type chunkState uint8

const (
	chunkSize    chunkState = iota // a chunk-size line is next
	chunkData                      // left bytes of data are next
	chunkDataEnd                   // the CRLF after a chunk's data is next
)

// start prepares the body of r.
func (b *body) start(r *http.Request) {
	p := &b.c.st.p
	*b = body{c: b.c, g: b.g, active: r.Body == io.ReadCloser(b)}
	if !b.active {
		return
	}
	b.chunked = p.chunked()
	b.left = p.cl
	if b.chunked {
		b.left = 0
	}
	b.expect = p.expect100 && p.minor == 1
}

// end is called when the response is complete: later reads fail, and a
// body left unread makes the connection close (with a lingering close).
func (b *body) end() {
	if b.active && !b.done {
		b.c.closeAfter = true
		b.c.unread = b.err == nil
	}
	b.active = false
}

// bodyGuard fences a body's reads: every read holds mu, and the server
// takes mu (body.fence) when the response begins and when the handler
// returns, so that a read still running on another goroutine (an upstream
// transport sending the body, which net/http's servers also tolerate) can
// never read into the buffer, or the bytes, of what comes next.
type bodyGuard struct {
	mu sync.Mutex
	// abandoned tells a read the server took the body from it: at its
	// next deadline it gives up instead of waiting on.
	abandoned atomic.Bool
}

// fence takes the body's lock for the server; the caller unlocks b.g.mu.
// A read running on another goroutine is interrupted (a past read
// deadline) and waited for, and fence reports true: the bytes on the
// connection are then no longer in step with its requests, so it must
// close, and its buffers must not be reused.
func (b *body) fence() (stale bool) {
	g := b.g
	if g.mu.TryLock() {
		return false
	}
	g.abandoned.Store(true)
	b.c.nc.SetReadDeadline(aLongTimeAgo)
	g.mu.Lock()
	b.active = false
	return true
}

// aLongTimeAgo is a read deadline in the past: it interrupts a blocked
// read.
var aLongTimeAgo = time.Unix(1, 0)

// Read implements io.Reader.
func (b *body) Read(p []byte) (int, error) {
	b.g.mu.Lock()
	defer b.g.mu.Unlock()
	return b.readLocked(p)
}

// readLocked is Read with b.g.mu held.
func (b *body) readLocked(p []byte) (int, error) {
	if !b.active {
		return 0, errBodyDone
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.expect {
		b.expect = false
		if err := b.sendContinue(); err != nil {
			return 0, b.fail(failure.Wrap(failure.ClientCanceled, "writing 100 Continue", err))
		}
	}
	var n int
	var err error
	if b.chunked {
		n, err = b.readChunked(p)
	} else {
		n, err = b.readData(p, b.left)
		b.left -= int64(n)
		if err == nil && b.left == 0 {
			b.finish()
		}
	}
	b.read += int64(n)
	if err != nil && err != io.EOF {
		return n, b.fail(err)
	}
	return n, err
}

// Close implements io.Closer: it does nothing (the server decides, when
// the response is done, whether the rest is read or the connection
// closed).
func (b *body) Close() error { return nil }

// sendContinue writes 100 Continue (RFC 9110 §10.1.1), unless a response
// head was written already.
func (b *body) sendContinue() error {
	w := &b.c.st.resp
	if !w.continueOK || w.wroteHeader {
		return nil
	}
	w.continueOK = false
	c := b.c
	c.wbuf = append(c.wbuf, "HTTP/1.1 100 Continue\r\n\r\n"...)
	return c.flush()
}

// finish marks the body read to its end.
func (b *body) finish() { b.done = true }

// fail records err (a *failure.Error) as the body's end.
func (b *body) fail(err error) error {
	b.err = err
	b.c.closeAfter = true
	if failure.KindOf(err) == failure.ClientCanceled {
		b.c.cancelCtx()
	}
	return err
}

// readData reads at most max bytes of data into p.
func (b *body) readData(p []byte, max int64) (int, error) {
	c := b.c
	if int64(len(p)) > max {
		p = p[:max]
	}
	if c.r < c.w {
		n := copy(p, c.rbuf[c.r:c.w])
		c.r += n
		return n, nil
	}
	c.r, c.w = 0, 0
	if len(p) >= len(c.rbuf) {
		return b.fill(p)
	}
	n, err := b.fill(c.rbuf)
	if n == 0 {
		return 0, err
	}
	c.w = n
	m := copy(p, c.rbuf[:n])
	c.r = m
	return m, nil
}

// fill reads body bytes from the socket into p within body_timeout; its
// errors are typed.
func (b *body) fill(p []byte) (int, error) {
	c := b.c
	now := time.Now()
	want := now.Add(c.set.BodyTimeout)
	c.armRead(now, want)
	// A deadline that fired early is re-armed once.
	for range 3 {
		n, err := c.nc.Read(p)
		if n > 0 {
			return n, nil
		}
		switch {
		case err == nil:
			continue
		case isTimeout(err):
			if b.g.abandoned.Load() {
				return 0, failure.Wrap(failure.ClientCanceled, "the request body was taken back by the server while it was read", err)
			}
			if time.Now().Before(want) {
				c.setReadDeadline(want)
				continue
			}
			return 0, failure.Wrap(failure.RequestTimeout, "no request body bytes for "+c.set.BodyTimeout.String()+" after "+strconv.FormatInt(b.read, 10)+" bytes", err)
		case err == io.EOF:
			return 0, failure.Wrap(failure.ClientCanceled, "the client closed the connection "+strconv.FormatInt(b.read, 10)+" bytes into the request body", io.ErrUnexpectedEOF)
		default:
			return 0, failure.Wrap(failure.ClientCanceled, "reading the request body", err)
		}
	}
	return 0, failure.Wrap(failure.ClientCanceled, "reading the request body", io.ErrNoProgress)
}

// readChunked reads chunked data (RFC 9112 §7.1) into p.
func (b *body) readChunked(p []byte) (int, error) {
	// At most: the CRLF after a chunk, a size line, then data.
	for range 3 {
		switch b.state {
		case chunkDataEnd:
			crlf, err := b.need(2)
			if err != nil {
				return 0, err
			}
			if crlf[0] != '\r' || crlf[1] != '\n' {
				return 0, invalidBody("chunk data not followed by CRLF (more data than its size, or a bare LF)")
			}
			b.c.r += 2
			b.state = chunkSize
		case chunkSize:
			line, err := b.line(maxChunkLine, "chunk-size line")
			if err != nil {
				return 0, err
			}
			size, err := parseChunkSize(line)
			if err != nil {
				return 0, err
			}
			if size == 0 {
				if err := b.trailers(); err != nil {
					return 0, err
				}
				b.finish()
				return 0, io.EOF
			}
			b.left, b.state = size, chunkData
		case chunkData:
			n, err := b.readData(p, b.left)
			b.left -= int64(n)
			if b.left == 0 {
				b.state = chunkDataEnd
			}
			return n, err
		}
	}
	return 0, invalidBody("chunked body makes no progress")
}

func invalidBody(detail string) error {
	return failure.New(failure.ClientBodyInvalid, detail)
}

// need makes n bytes available at rbuf[r:] and returns them.
func (b *body) need(n int) ([]byte, error) {
	c := b.c
	// Each round reads at least a byte.
	for range n + 1 {
		if c.w-c.r >= n {
			return c.rbuf[c.r : c.r+n], nil
		}
		b.compact()
		m, err := b.fill(c.rbuf[c.w:])
		if err != nil {
			return nil, err
		}
		c.w += m
	}
	return nil, invalidBody("chunked body makes no progress")
}

// compact moves the unread bytes to the front of the read buffer.
func (b *body) compact() {
	c := b.c
	if c.r > 0 {
		c.w = copy(c.rbuf, c.rbuf[c.r:c.w])
		c.r = 0
	}
}

// line returns the next line of the body (a chunk-size or trailer line)
// without its CRLF, of at most max bytes.
func (b *body) line(max int, what string) ([]byte, error) {
	c := b.c
	// Each round reads at least a byte; the line's limit bounds them.
	for range max + 3 {
		if i := bytes.IndexByte(c.rbuf[c.r:c.w], '\n'); i >= 0 {
			line := c.rbuf[c.r : c.r+i]
			c.r += i + 1
			if len(line) == 0 || line[len(line)-1] != '\r' {
				return nil, invalidBody(what + " ends in a bare LF")
			}
			line = line[:len(line)-1]
			if len(line) > max {
				return nil, invalidBody(what + " longer than " + strconv.Itoa(max) + " bytes")
			}
			return line, nil
		}
		if c.w-c.r > max+1 {
			return nil, invalidBody(what + " longer than " + strconv.Itoa(max) + " bytes")
		}
		b.compact()
		if c.w == len(c.rbuf) && !c.grow(max+2) {
			return nil, invalidBody(what + " longer than " + strconv.Itoa(max) + " bytes")
		}
		m, err := b.fill(c.rbuf[c.w:])
		if err != nil {
			return nil, err
		}
		c.w += m
	}
	return nil, invalidBody(what + " makes no progress")
}

// parseChunkSize parses RFC 9112 §7.1:
//
//	chunk-size = 1*HEXDIG
//	chunk-ext  = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//
// The size has 1 to 16 digits and must fit an int64; extensions are
// ignored but must start with ";" and hold no control character but HTAB.
func parseChunkSize(line []byte) (int64, error) {
	i := 0
	for i < len(line) && isHex(line[i]) {
		i++
	}
	if i == 0 || i > 16 {
		return 0, invalidBody("invalid chunk size " + failure.Quote(line))
	}
	n, err := strconv.ParseUint(string(line[:i]), 16, 64)
	if err != nil || n > math.MaxInt64 {
		return 0, invalidBody("chunk size out of range " + failure.Quote(line))
	}
	ext := line[i:]
	if len(ext) > 0 {
		// BWS only before a ";": "5 " is not a chunk size.
		for len(ext) > 0 && (ext[0] == ' ' || ext[0] == '\t') {
			ext = ext[1:]
		}
		if len(ext) == 0 || ext[0] != ';' {
			return 0, invalidBody("invalid chunk size " + failure.Quote(line))
		}
		for _, c := range ext {
			if !valueChars[c] {
				return 0, invalidBody("control character in a chunk extension " + failure.Quote(line))
			}
		}
	}
	return int64(n), nil
}

// trailers reads the trailer section (RFC 9112 §7.1.2): field lines
// checked as header fields are, within the header limits, then dropped.
func (b *body) trailers() error {
	lim := b.c.set.lim
	size, n := 0, 0
	// Each round consumes a line; the limits bound them.
	for range lim.fields + 2 {
		line, err := b.line(lim.header, "trailer line")
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return nil
		}
		size += len(line) + 2
		n++
		if size > lim.header || n > lim.fields {
			return invalidBody("trailer section over the header limits")
		}
		if _, _, why := splitField(line); why != "" {
			return invalidBody("trailer line: " + why + ": " + failure.Quote(line))
		}
	}
	return invalidBody("trailer section over the header limits")
}

// settle is called when the response head is written with the body not
// read to its end: a client that waits for 100 Continue has sent nothing
// (close after the response); otherwise up to maxDiscard bytes are read
// and dropped, so that the connection can carry the next request, as
// net/http does. Reading before the response goes out also spares the
// clients that send their whole request before they read the response a
// deadlock.
func (b *body) settle() {
	c := b.c
	if b.fence() {
		// A read was running on another goroutine: its bytes are lost
		// to the connection, which closes.
		c.closeAfter, c.retired = true, true
	}
	defer b.g.mu.Unlock()
	if !b.active || b.done {
		return
	}
	if b.err != nil {
		c.closeAfter = true
		return
	}
	if b.expect || c.closeAfter || !b.chunked && b.left-int64(c.w-c.r) > maxDiscard {
		c.closeAfter = true
		if !b.expect {
			c.unread = true
		}
		return
	}
	// The discarded bytes land in the output buffer's room: the head is
	// appended to it only after settle.
	scratch := c.wbuf[len(c.wbuf):cap(c.wbuf)]
	if len(scratch) < 512 {
		scratch = make([]byte, 1024)
	}
	// Bounded by maxDiscard data bytes and by maxDiscardReads rounds:
	// each round reads at least a byte or ends, and the rounds bound what
	// chunked framing adds (a 1-byte chunk may carry a 4KiB size line), so
	// that draining never reads much more than maxDiscard from the wire.
	for n, rounds := 0, 0; n <= maxDiscard; rounds++ {
		if rounds == maxDiscardReads {
			break
		}
		m, err := b.readLocked(scratch)
		n += m
		if err != nil {
			if err != io.EOF {
				c.closeAfter = true
			}
			return
		}
		if b.done {
			return
		}
	}
	c.closeAfter = true
	c.unread = true
}
