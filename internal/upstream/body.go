package upstream

import (
	"bufio"
	"errors"
	"io"
	"strconv"
	"time"

	"candor/internal/failure"
)

// maxChunkLine bounds a chunk-size line, extensions included.
const maxChunkLine = 4096

// Body is a response body read under the response's framing. Read returns
// io.EOF only when the body is complete by its framing; any other end is a
// *failure.Error (TruncatedBody, MalformedChunk, BodyTimeout or
// ClientCanceled). When the body is complete the connection goes back to
// the pool. Body is not safe for concurrent use.
type Body struct {
	c    *conn
	att  *attempt
	mode BodyMode
	// left is the number of bytes left: of the body (BodyLength) or of the
	// current chunk (BodyChunked).
	left int64
	// inChunk reports that a chunk's data is being read.
	inChunk bool
	read    int64 // body bytes returned so far
	done    bool
	closed  bool
	err     error
	trailer []Field
	// sent and recv are the attempt's wire byte counts, frozen when the
	// body ends (the connection may then serve another request).
	sent, recv int64
	// h2 is set for an HTTP/2 response (h2.go), which reads through it;
	// c and att are then nil.
	h2 *h2Attempt
}

// Read reads body bytes.
func (b *Body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.h2 != nil {
		return b.h2.read(b, p)
	}
	if b.mayWait() {
		if err := b.c.setReadDeadline(time.Now().Add(b.att.t.opt.IdleTimeout)); err != nil {
			return 0, b.failIO(err)
		}
	}
	switch b.mode {
	case BodyNone:
		b.finish()
		return 0, io.EOF
	case BodyLength:
		return b.readLength(p)
	case BodyChunked:
		return b.readChunked(p)
	default:
		return b.readUntilClose(p)
	}
}

// mayWait reports whether the next Read may wait for the network, and so
// needs a deadline (and a check for cancellation, which goes with it). A
// read that bufio serves from its buffer, or the end of a body without
// one, does not wait. Chunked framing may need more bytes than are
// buffered, so its reads always count as waiting.
func (b *Body) mayWait() bool {
	switch b.mode {
	case BodyNone:
		return false
	case BodyLength:
		return b.left > 0 && b.c.br.Buffered() == 0
	case BodyClose:
		return b.c.br.Buffered() == 0
	}
	return true
}

func (b *Body) readLength(p []byte) (int, error) {
	if b.left == 0 {
		b.finish()
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.c.br.Read(p)
	b.left -= int64(n)
	b.read += int64(n)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return n, b.fail(failure.TruncatedBody, "connection closed after "+strconv.FormatInt(b.read, 10)+" of "+strconv.FormatInt(b.read+b.left, 10)+" body bytes", io.ErrUnexpectedEOF)
		}
		return n, b.failIO(err)
	}
	if b.left == 0 {
		b.finish()
		return n, io.EOF
	}
	return n, nil
}

func (b *Body) readUntilClose(p []byte) (int, error) {
	n, err := b.c.br.Read(p)
	b.read += int64(n)
	if err != nil {
		if errors.Is(err, io.EOF) {
			b.finish()
			return n, io.EOF
		}
		return n, b.failIO(err)
	}
	return n, nil
}

// readChunked decodes RFC 9112 §7.1:
//
//	chunked-body = *chunk last-chunk trailer-section CRLF
//	chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//	chunk-size   = 1*HEXDIG
//	last-chunk   = 1*("0") [ chunk-ext ] CRLF
func (b *Body) readChunked(p []byte) (int, error) {
	for !b.inChunk {
		size, err := b.chunkSize()
		if err != nil {
			return 0, err
		}
		if size == 0 {
			if err := b.readTrailer(); err != nil {
				return 0, err
			}
			b.finish()
			return 0, io.EOF
		}
		b.left, b.inChunk = size, true
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.c.br.Read(p)
	b.left -= int64(n)
	b.read += int64(n)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return n, b.fail(failure.TruncatedBody, "connection closed inside a chunk after "+strconv.FormatInt(b.read, 10)+" body bytes", io.ErrUnexpectedEOF)
		}
		return n, b.failIO(err)
	}
	if b.left == 0 {
		b.inChunk = false
		if err := b.chunkEnd(); err != nil {
			return n, err
		}
	}
	return n, nil
}

// chunkEnd consumes the CRLF after chunk data.
func (b *Body) chunkEnd() error {
	// Byte by byte: io.ReadFull through an interface would move crlf to
	// the heap, an allocation per chunk.
	var crlf [2]byte
	for i := range crlf {
		c, err := b.c.br.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return b.fail(failure.TruncatedBody, "connection closed after chunk data", io.ErrUnexpectedEOF)
			}
			return b.failIO(err)
		}
		crlf[i] = c
	}
	if crlf != [2]byte{'\r', '\n'} {
		return b.fail(failure.MalformedChunk, "chunk data longer than its size or not followed by CRLF: "+failure.Quote(crlf[:]), nil)
	}
	return nil
}

// chunkLine reads one line of the chunked framing, without its CRLF.
func (b *Body) chunkLine(what string) ([]byte, error) {
	line, err := b.c.br.ReadSlice('\n')
	if err != nil {
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			return nil, b.fail(failure.MalformedChunk, what+" longer than "+strconv.Itoa(b.c.br.Size())+" bytes", nil)
		case errors.Is(err, io.EOF):
			return nil, b.fail(failure.TruncatedBody, "connection closed in the chunked framing after "+strconv.FormatInt(b.read, 10)+" body bytes", io.ErrUnexpectedEOF)
		}
		return nil, b.failIO(err)
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, b.fail(failure.MalformedChunk, what+" ends in a bare LF: "+failure.Quote(line), nil)
	}
	return line[:len(line)-2], nil
}

// chunkSize parses chunk-size [ chunk-ext ].
func (b *Body) chunkSize() (int64, error) {
	line, err := b.chunkLine("chunk-size line")
	if err != nil {
		return 0, err
	}
	var size int64
	i, digits := 0, 0
	for ; i < len(line); i++ {
		d := unhex(line[i])
		if d < 0 {
			break
		}
		if size == 0 && d == 0 {
			continue // leading zeros never overflow
		}
		if digits++; digits > 15 {
			return 0, b.fail(failure.MalformedChunk, "chunk size overflows: "+failure.Quote(line), nil)
		}
		size = size<<4 | int64(d)
	}
	if i == 0 {
		return 0, b.fail(failure.MalformedChunk, "invalid chunk size: "+failure.Quote(line), nil)
	}
	if !validChunkExt(line[i:]) {
		return 0, b.fail(failure.MalformedChunk, "invalid chunk extension: "+failure.Quote(line), nil)
	}
	return size, nil
}

// validChunkExt checks chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "="
// BWS chunk-ext-val ] ) loosely: empty, or optional whitespace then ";",
// with no control characters but HTAB. Extensions are ignored (§7.1.1).
func validChunkExt(ext []byte) bool {
	i := 0
	for i < len(ext) && (ext[i] == ' ' || ext[i] == '\t') {
		i++
	}
	if i == len(ext) {
		return i == 0 // whitespace alone after the size is not an extension
	}
	if ext[i] != ';' {
		return false
	}
	for _, c := range ext[i:] {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// readTrailer reads the trailer section after the last chunk, validating
// each field as a header field (RFC 9112 §7.1.2).
func (b *Body) readTrailer() error {
	lim := b.att.t.opt.HeadLimits
	used := 0
	for n := 1; ; n++ {
		line, err := b.chunkLine("trailer line")
		if err != nil {
			return err
		}
		used += len(line) + 2
		if used > lim.Bytes {
			return b.fail(failure.MalformedChunk, "trailer section too large", nil)
		}
		if len(line) == 0 {
			b.trailer = dropHopByHop(b.trailer, nil)
			return nil
		}
		// RFC 9112 §7.1.2: the trailer section is bounded like a header
		// section; the empty line that ends it is not a field.
		if n > lim.Fields {
			return b.fail(failure.MalformedChunk, "trailer section too large", nil)
		}
		name, value, err := parseField(line, n)
		if err != nil {
			return b.fail(failure.MalformedChunk, "trailer "+failure.KindOf(err).String()+": "+detailOf(err), nil)
		}
		b.trailer = append(b.trailer, Field{Name: string(name), Value: string(value)})
	}
}

// Trailer returns the trailer fields of a chunked body, valid after Read
// returned io.EOF.
func (b *Body) Trailer() []Field { return b.trailer }

// Buffered reports how many body-framing bytes are already in memory; zero
// means the next Read may wait for the network, so a streaming proxy should
// flush what it has written.
func (b *Body) Buffered() int {
	if b.done || b.err != nil || b.h2 != nil {
		return 0
	}
	return b.c.br.Buffered()
}

// BytesRead returns the body bytes returned so far.
func (b *Body) BytesRead() int64 { return b.read }

// Wire returns the bytes this attempt sent to and received from the
// upstream so far, heads and framing included.
func (b *Body) Wire() (sent, received int64) {
	if b.h2 != nil {
		return b.h2.wire()
	}
	if b.done || b.err != nil {
		return b.sent, b.recv
	}
	return b.c.sent - b.att.sent0, b.c.recv - b.att.recv0
}

// freeze records the attempt's byte counts before the connection is
// released or closed.
func (b *Body) freeze() {
	b.sent, b.recv = b.c.sent-b.att.sent0, b.c.recv-b.att.recv0
}

// Close releases the body. A body closed before it was complete closes its
// connection, which cannot be reused.
func (b *Body) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	if b.h2 != nil {
		b.h2.close(b)
		return nil
	}
	if !b.done && b.err == nil && (b.mode == BodyNone || b.mode == BodyLength && b.left == 0) {
		b.finish()
	}
	if !b.done && b.err == nil {
		b.freeze()
		b.att.end()
		b.c.close()
		b.done = true
	}
	return nil
}

// Err returns the error that ended the body, if any.
func (b *Body) Err() error { return b.err }

// finish ends a complete body and returns the connection to the pool when
// it may be reused.
func (b *Body) finish() {
	b.freeze()
	b.done = true
	b.att.release(b.c)
}

// fail ends the body with a typed error of kind k, closing the connection.
func (b *Body) fail(k failure.Kind, detail string, err error) error {
	fe := failure.Wrap(k, detail, err)
	b.att.fill(fe, b.c)
	b.freeze()
	b.err = fe
	b.att.end()
	b.c.close()
	return fe
}

// failIO classifies an I/O error while reading the body.
func (b *Body) failIO(err error) error {
	fe := failure.Classify(b.att.ctx, failure.PhaseReadBody, err)
	if fe.Detail == "" {
		fe.Detail = "after " + strconv.FormatInt(b.read, 10) + " body bytes"
	}
	b.att.fill(fe, b.c)
	b.freeze()
	b.err = fe
	b.att.end()
	b.c.close()
	return fe
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// detailOf returns the Detail of a *failure.Error, or err's text.
func detailOf(err error) string {
	if fe, ok := errors.AsType[*failure.Error](err); ok {
		return fe.Detail
	}
	return err.Error()
}

var _ io.ReadCloser = (*Body)(nil)
