package upstream

// HTTP/2 to upstream targets (Options.H2, an upstream's protocol: h2), which
// is what gRPC needs: TLS with ALPN h2 for https targets, prior-knowledge
// h2c for http targets. Trailers (grpc-status, grpc-message) come back in
// Body.Trailer like a chunked HTTP/1.1 body's.
//
// The client is golang.org/x/net/http2's Transport, one per target, so
// that each target has a connection pool of its own (usually one
// multiplexed connection), adopted with the target across reloads. It is
// preferred to net/http's Transport with Protocols (HTTP2,
// UnencryptedHTTP2) because its errors are exported types: StreamError
// with the RST_STREAM code, GoAwayError and ConnectionError, which
// package failure matches with errors.As, whereas net/http's bundled
// HTTP/2 keeps its GOAWAY and connection errors unexported, so that only
// their text would tell them apart. It also has no HTTP/1.1 fallback to
// take by accident, and one dial hook serves TLS and h2c alike. (x/net
// marks it deprecated in favour of net/http's; from Go 1.27 on it wraps
// net/http's implementation, and the error types should be checked again
// then: internal/upstream's h2 tests pin every cause with real servers.)
//
// What candor adds to it, written here because x/net has no such hooks:
//   - the dial: the upstream's resolver, dialFirst and handshake, as for
//     HTTP/1.1, within timeouts.connect, failing with a dial's causes; an
//     https target that does not choose h2 through ALPN, or an http
//     target whose first bytes are not an HTTP/2 SETTINGS frame (an
//     HTTP/1.1-only server), is upstream_protocol_mismatch;
//   - timeouts: x/net has none per request. One timer per attempt bounds
//     the wait for the response head once the request is sent
//     (response_header, or the route's per-try timeout and deadline), each
//     wait for the upstream to take request body bytes, and each wait for
//     response body bytes (idle); when it fires, the attempt's context is
//     canceled and the failure is a timeout, never a 502;
//   - the response head: response_head_limit applies to its size as HPACK
//     counts it (RFC 9113 §6.5.2: name, value and 32 bytes per field) and
//     to its number of fields; hop-by-hop and framing fields are dropped,
//     as for HTTP/1.1;
//   - every failure is a *failure.Error with the attempt's upstream,
//     target, attempt number and byte counts.
//
// HTTP/2 multiplexes requests on a connection, so an attempt's byte counts
// (Body.Wire, failure.Error.BytesSent and BytesReceived) are its body
// bytes: its share of the connection's header bytes is not known.

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"candor/internal/failure"
)

// HTTP/2 connection settings that do not depend on the configuration, so
// that a target adopted by a reload keeps its connections whatever else
// changed.
const (
	// h2MaxHeaderList is the SETTINGS_MAX_HEADER_LIST_SIZE advertised:
	// above the largest response_head_limit (1MiB) with room for HPACK's
	// per-field overhead, so that a head over the configured limit is
	// upstream_head_too_large (checked by candor), not a protocol error.
	h2MaxHeaderList = 2 << 20
	// h2PingAfter is how long a connection may receive nothing before a
	// PING checks it, and h2PingTimeout how long the PING may go
	// unanswered before the connection is closed: an upstream that
	// vanished without closing its connections (a power cut, a dropped
	// route) is noticed between requests, not by the next request's
	// timeout.
	h2PingAfter   = 15 * time.Second
	h2PingTimeout = 10 * time.Second
	// h2WriteStall closes a connection on which no byte could be written
	// for this long.
	h2WriteStall = 15 * time.Second
)

// h2Target is the HTTP/2 side of a Target.
type h2Target struct {
	tr     *http2.Transport
	scheme string
	// closed is set when the target's owner closed it: connections still
	// carrying requests are closed once they are idle.
	closed atomic.Bool
}

// setupH2 gives tg its HTTP/2 transport. An https target's TLS
// configuration offers only h2 through ALPN.
func (t *Transport) setupH2(tg *Target) {
	h := &h2Target{scheme: "http"}
	if tg.tls != nil {
		h.scheme = "https"
		tg.tls.NextProtos = []string{http2.NextProtoTLS}
	}
	h.tr = &http2.Transport{
		DialTLSContext: func(ctx context.Context, _, _ string, _ *tls.Config) (net.Conn, error) {
			return tg.dialH2(ctx)
		},
		AllowHTTP: true,
		// The body is passed through as the upstream encoded it.
		DisableCompression: true,
		MaxHeaderListSize:  h2MaxHeaderList,
		IdleConnTimeout:    t.opt.PoolIdle,
		ReadIdleTimeout:    h2PingAfter,
		PingTimeout:        h2PingTimeout,
		WriteByteTimeout:   h2WriteStall,
	}
	tg.h2 = h
}

// close closes the target's idle connections, and the others as they
// become idle.
func (h *h2Target) close() {
	h.closed.Store(true)
	h.tr.CloseIdleConnections()
}

// H2 reports whether the Transport speaks HTTP/2 to its targets.
func (t *Transport) H2() bool { return t.opt.H2 }

// h2Adoptable reports whether targets built under prev can serve under
// opt: both speak the same protocol.
func h2Adoptable(prev, opt Options) bool { return prev.H2 == opt.H2 }

// h2AttemptKey is the context key of the attempt whose request started a
// dial, so that the dial records its timing there.
type h2AttemptKey struct{}

// dialH2 resolves, connects and, for an https target, completes a TLS
// handshake that chose h2, within the connect timeout of the target's
// current owner (a reload may have changed it). ctx is the request's that
// started the dial. The error is a *failure.Error, which may be shared by
// several attempts waiting for the same dial: each copies it.
func (tg *Target) dialH2(ctx context.Context) (net.Conn, error) {
	t := tg.owner.Load()
	a, _ := ctx.Value(h2AttemptKey{}).(*h2Attempt)
	client := ctx
	deadline := time.Now().Add(t.opt.ConnectTimeout)
	if a != nil {
		client = a.ctx
		deadline = a.req.bound(deadline)
	}
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	fail := func(p failure.Phase, err error) error {
		fe := failure.Classify(client, p, err)
		fe.Upstream, fe.Target = t.opt.Name, tg.Addr
		return fe
	}
	var literal [1]netip.Addr
	ips, err := t.resolve(dctx, tg, literal[:0])
	if err != nil {
		return nil, fail(failure.PhaseDNS, err)
	}
	if a != nil && !tg.ip.IsValid() {
		a.timing.DNS = time.Since(a.start)
	}
	nc, _, err := dialFirst(dctx, ips, tg.port)
	if err != nil {
		return nil, fail(failure.PhaseConnect, err)
	}
	if a != nil {
		a.timing.Connect = time.Since(a.start)
	}
	if tg.tls == nil {
		nc = &h2cConn{Conn: nc}
	} else {
		tc, err := handshake(dctx, nc, tg.tls)
		if err != nil {
			return nil, fail(failure.PhaseTLS, err)
		}
		if p := tc.ConnectionState().NegotiatedProtocol; p != http2.NextProtoTLS {
			tc.Close()
			fe := failure.New(failure.ProtocolMismatch, "the TLS handshake chose "+strconv.Quote(p)+" through ALPN, not h2: the target does not speak HTTP/2 over TLS")
			fe.Phase = failure.PhaseTLS
			fe.Upstream, fe.Target = t.opt.Name, tg.Addr
			return nil, fe
		}
		nc = tc
		if a != nil {
			a.timing.TLS = time.Since(a.start)
		}
	}
	tg.opened.Add(1)
	return nc, nil
}

// h2cConn is an h2c connection as x/net/http2 reads it. It checks that
// the target's first bytes are a SETTINGS frame, which its connection
// preface must be (RFC 9113 §3.4): a target that answers in another
// protocol (an HTTP/1.1 server's 400 to the client preface) is then
// upstream_protocol_mismatch, whichever of x/net's errors the request
// ends with (some of which are only text). Over TLS, ALPN has settled the
// protocol already.
type h2cConn struct {
	net.Conn
	// first holds the first bytes read, up to a frame header; only
	// x/net's read loop touches it.
	first [9]byte
	n     int
	// alien is set when those bytes are not a SETTINGS frame header,
	// after seen, which holds them (the attempt reads it then).
	alien atomic.Bool
	seen  string
}

func (c *h2cConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.n < len(c.first) && n > 0 {
		c.n += copy(c.first[c.n:], p[:n])
		// Type SETTINGS (0x4), no ACK flag, stream 0; an HTTP/1.x
		// answer fails at once ("HTTP/1.1 " has type 'P').
		if c.n >= 4 && c.first[3] != 0x4 || c.n == len(c.first) && (c.first[4]&0x1 != 0 || binary.BigEndian.Uint32(c.first[5:])&0x7fffffff != 0) {
			c.seen = string(c.first[:c.n])
			c.alien.Store(true)
			c.n = len(c.first) // checked: no more copies
		}
	}
	return n, err
}

// The phases of an attempt's timer.
const (
	h2Off     uint8 = iota // not armed
	h2Writing              // the upstream is to take request body bytes
	h2Waiting              // the request was sent; the head is awaited
	h2Reading              // response body bytes are awaited
)

// errH2Timeout is the cause of an attempt's context canceled by its timer.
var errH2Timeout = fmt.Errorf("http2 attempt: no progress in time: %w", os.ErrDeadlineExceeded)

// h2Attempt is the state of one request on an HTTP/2 target. A successful
// attempt's Response, Head and Body live in it.
type h2Attempt struct {
	t     *Transport
	tg    *Target
	ctx   context.Context // the caller's
	req   *Request
	start time.Time
	// actx is the context of the HTTP/2 request, canceled (with cause
	// errH2Timeout) by the timer, and when the attempt ends.
	actx   context.Context
	cancel context.CancelCauseFunc
	trace  httptrace.ClientTrace
	res    *http.Response
	src    *h2Source
	conn   *h2cConn // the h2c connection the request went on, if known
	timing Timing
	// wrote is Timing.Wrote, set on x/net's writer goroutine, which may
	// outlive the round trip.
	wrote  atomic.Int64
	reused atomic.Bool
	ended  bool
	// abandoned is set when the attempt ends: no more request body is
	// read.
	abandoned atomic.Bool

	// sent counts request body bytes (read by x/net's writer goroutine),
	// recv response body bytes.
	sent atomic.Int64
	recv int64

	// The timer and its state, under mu: x/net's writer goroutine arms it
	// while the request body is sent and when the request is complete.
	mu    sync.Mutex
	timer *time.Timer
	phase uint8     // the armed phase, h2Off when not armed
	due   time.Time // when the armed phase expires
	head  bool      // the head arrived (or the attempt failed): the request side arms no more
	fired uint8     // the phase that expired, h2Off if none

	head0 Head
	resp  Response
	body  Body
}

// roundTripH2 is RoundTrip for an HTTP/2 target. The request's Upgrade is
// not offered (HTTP/2 has no Upgrade): the upstream's answer is an
// ordinary response. There is no replay of its own: x/net/http2 sends a
// request again, on another connection, only when the upstream proved it
// did not process it (REFUSED_STREAM, or a GOAWAY below its stream; RFC
// 9113 §8.7), which is the HTTP/2 form of the keep-alive race.
func (t *Transport) roundTripH2(ctx context.Context, tg *Target, req *Request) (*Response, error) {
	a := &h2Attempt{t: t, tg: tg, ctx: ctx, req: req, start: time.Now()}
	a.actx, a.cancel = context.WithCancelCause(ctx)
	a.trace = httptrace.ClientTrace{GotConn: a.gotConn, WroteRequest: a.wroteRequest}
	hctx := httptrace.WithClientTrace(context.WithValue(a.actx, h2AttemptKey{}, a), &a.trace)
	hr, err := a.request(hctx)
	if err != nil {
		fe := failure.Wrap(failure.InternalError, "building the HTTP/2 request", err)
		a.fill(fe)
		a.end()
		return nil, fe
	}
	res, err := tg.h2.tr.RoundTrip(hr)
	a.gotHead()
	if err != nil {
		return nil, a.failHead(err)
	}
	a.res = res
	a.timing.Wrote = time.Duration(a.wrote.Load())
	a.timing.FirstByte = time.Since(a.start)
	h := &a.head0
	if fe := a.readHead(h, res); fe != nil {
		a.fill(fe)
		a.end()
		return nil, fe
	}
	a.body = Body{h2: a, mode: h.Mode, left: h.ContentLength}
	a.resp = Response{Head: h, Body: &a.body, Reused: a.reused.Load(), Timing: a.timing}
	return &a.resp, nil
}

// request builds the HTTP/2 request: the client's end-to-end fields (the
// same as for HTTP/1.1: hop-by-hop, framing and Host are not forwarded),
// candor's Extra fields, and "te: trailers" when the client accepts
// trailers (the only TE HTTP/2 allows, RFC 9113 §8.2.2; gRPC servers may
// require it).
func (a *h2Attempt) request(ctx context.Context) (*http.Request, error) {
	req := a.req
	u := &url.URL{Scheme: a.tg.h2.scheme, Host: a.tg.Addr, Opaque: req.Target}
	if strings.HasPrefix(req.Target, "//") {
		// An Opaque starting with "//" would be read as an authority.
		p, err := url.ParseRequestURI(req.Target)
		if err != nil {
			return nil, err
		}
		u.Opaque, u.Path, u.RawPath, u.RawQuery = "", p.Path, p.RawPath, p.RawQuery
	}
	h := make(http.Header, len(req.Header)+len(req.Extra)+1)
	conn := connectionOptions(req.Header)
	for k, vs := range req.Header {
		if !skipRequestField(k, conn, req.Extra) {
			h[k] = vs // x/net only reads it
		}
	}
	for _, f := range req.Extra {
		if f.Value == "" {
			continue // keeps the client's field out, and sends none
		}
		vs := h[f.Name]
		h[f.Name] = append(vs[:len(vs):len(vs)], f.Value)
	}
	if acceptsTrailers(req.Header["Te"]) {
		h["Te"] = []string{"trailers"}
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = nil // x/net would send its own
	}
	hr := &http.Request{
		Method:     req.Method,
		URL:        u,
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Header:     h,
		Host:       req.Host,
		// Without pooling, each request has a connection of its own.
		Close: a.t.opt.MaxIdlePerTarget == 0,
	}
	if req.Body != nil && req.ContentLength != 0 {
		a.src = &h2Source{a: a, r: req.Body, left: req.ContentLength}
		hr.Body = a.src
		hr.ContentLength = req.ContentLength
		if hr.ContentLength < 0 {
			hr.ContentLength = 0 // unknown, for net/http
		}
		hr.GetBody = a.getBody
	}
	return hr.WithContext(ctx), nil
}

// acceptsTrailers reports whether a TE field lists "trailers".
func acceptsTrailers(te []string) bool {
	for _, v := range te {
		for tok := range strings.SplitSeq(v, ",") {
			tok, _, _ = strings.Cut(tok, ";")
			if strings.EqualFold(strings.Trim(tok, " \t"), "trailers") {
				return true
			}
		}
	}
	return false
}

// getBody gives x/net/http2 the request body again when it sends the
// request once more because the upstream did not process it: a fresh
// copy of a buffered body, or the body itself when none of it was read. A
// body partly sent cannot be sent again: the attempt then fails as reset
// before the response, with a typed error (x/net's own would be text).
func (a *h2Attempt) getBody() (io.ReadCloser, error) {
	old := a.src
	switch {
	case a.req.GetBody != nil:
		a.sent.Store(0)
		a.src = &h2Source{a: a, r: a.req.GetBody(), left: a.req.ContentLength}
		return a.src, nil
	case !old.started.Load():
		return old, nil
	}
	return nil, failure.New(failure.ResetBeforeResponse, "the upstream did not process the request (REFUSED_STREAM or GOAWAY) after part of a body that cannot be replayed was sent")
}

// h2Source is the request body as x/net/http2 reads it, on a goroutine
// of its own: it tags the client's errors (a client body error is never
// the upstream's fault) and runs the attempt's timer while the upstream
// takes the bytes read.
type h2Source struct {
	a       *h2Attempt
	r       io.Reader
	left    int64 // declared length not yet read, or -1
	started atomic.Bool
}

// errAbandoned ends the reading of a request body whose attempt ended.
var errAbandoned = errors.New("upstream: the HTTP/2 attempt ended before its request body was sent")

// Read reads the client's body for x/net's writer goroutine. Once the
// attempt has ended (its response complete before the request body, as
// with an early answer or a finished bidirectional stream), no further
// read of the client's body starts: the handler may have returned. A read
// already waiting for the client when the attempt ends returns when the
// client sends or its server ends the body (its body_timeout, or the
// handler's end), so the downstream server's request body must allow a
// Read that is still waiting when the handler returns, as net/http's and
// x/net/http2's do.
func (s *h2Source) Read(p []byte) (int, error) {
	if s.a.abandoned.Load() {
		return 0, errAbandoned
	}
	s.started.Store(true)
	s.a.disarm(h2Writing) // the upstream took what it was given
	n, err := s.r.Read(p)
	s.a.sent.Add(int64(n))
	if s.left >= 0 {
		s.left -= int64(n)
		if err == io.EOF && s.left > 0 {
			err = io.ErrUnexpectedEOF
		}
	}
	if err != nil && err != io.EOF {
		// The client's cause as its reader typed it, else
		// client_body_invalid.
		err = tagClient(clientBodyError{err}, 0)
	}
	if n > 0 {
		s.a.arm(h2Writing, s.a.t.opt.IdleTimeout, false)
	}
	return n, err
}

// Close does nothing: the body is the client's, which its server closes.
func (s *h2Source) Close() error { return nil }

// gotConn records whether the request went on a connection used before.
func (a *h2Attempt) gotConn(info httptrace.GotConnInfo) {
	a.conn, _ = info.Conn.(*h2cConn)
	if info.Reused {
		a.reused.Store(true)
		a.tg.reused.Add(1)
	}
}

// wroteRequest starts the wait for the response head once the request,
// body included, is sent.
func (a *h2Attempt) wroteRequest(info httptrace.WroteRequestInfo) {
	if info.Err != nil {
		return
	}
	a.wrote.Store(int64(time.Since(a.start)))
	wait := a.req.HeaderTimeout
	if wait <= 0 {
		wait = a.t.opt.ResponseHeaderTimeout
	}
	a.arm(h2Waiting, wait, true)
}

// arm starts the timer for phase, d from now (bounded by the request's
// Deadline when bound is set). The request side (h2Writing, h2Waiting)
// arms only until the head arrived. d <= 0 arms nothing.
func (a *h2Attempt) arm(phase uint8, d time.Duration, bound bool) {
	if d <= 0 {
		return
	}
	due := time.Now().Add(d)
	if bound {
		due = a.req.bound(due)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fired != h2Off || phase != h2Reading && (a.head || a.phase == h2Waiting) {
		return
	}
	a.phase, a.due = phase, due
	if a.timer == nil {
		a.timer = time.AfterFunc(time.Until(due), a.expire)
	} else {
		a.timer.Reset(time.Until(due))
	}
}

// disarm stops the timer if it runs for phase.
func (a *h2Attempt) disarm(phase uint8) {
	a.mu.Lock()
	if a.phase == phase {
		a.phase = h2Off
		a.timer.Stop()
	}
	a.mu.Unlock()
}

// gotHead stops the request side's timer: the head arrived, or the round
// trip failed.
func (a *h2Attempt) gotHead() {
	a.mu.Lock()
	a.head = true
	if a.phase != h2Off {
		a.phase = h2Off
		a.timer.Stop()
	}
	a.mu.Unlock()
}

// expire is the timer's function: it cancels the attempt, unless the
// timer was stopped or moved later meanwhile (a Reset timer fires again).
func (a *h2Attempt) expire() {
	a.mu.Lock()
	if a.phase == h2Off || a.fired != h2Off || time.Now().Before(a.due) {
		a.mu.Unlock()
		return
	}
	a.fired, a.phase = a.phase, h2Off
	a.mu.Unlock()
	a.cancel(errH2Timeout)
}

// expired returns the phase whose timer fired, or h2Off.
func (a *h2Attempt) expired() uint8 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fired
}

// classify types err, which ended the attempt in phase p: a timeout when
// the timer fired, the client's when its context ended, else by the cause
// table's rules.
func (a *h2Attempt) classify(p failure.Phase, err error) *failure.Error {
	if errors.Is(a.ctx.Err(), context.Canceled) {
		return &failure.Error{Kind: failure.ClientCanceled, Phase: p, Err: err}
	}
	switch a.expired() {
	case h2Writing:
		return failure.Classify(a.ctx, failure.PhaseWrite, errH2Timeout)
	case h2Waiting:
		return failure.Classify(a.ctx, failure.PhaseReadHead, errH2Timeout)
	case h2Reading:
		return failure.Classify(a.ctx, failure.PhaseReadBody, errH2Timeout)
	}
	if fe, ok := errors.AsType[*failure.Error](err); ok {
		// A dial's error may be shared with other attempts.
		c := *fe
		return &c
	}
	return failure.Classify(a.ctx, p, err)
}

// failHead types a failed round trip.
func (a *h2Attempt) failHead(err error) *failure.Error {
	if c := a.conn; c != nil && c.alien.Load() && a.ctx.Err() == nil {
		fe := failure.Wrap(failure.ProtocolMismatch, "the target answered the h2c connection preface with "+failure.Quote([]byte(c.seen))+", not an HTTP/2 SETTINGS frame: it does not speak HTTP/2 with prior knowledge", err)
		a.fill(fe)
		a.end()
		return fe
	}
	if _, typed := errors.AsType[*failure.Error](err); !typed && errors.Is(err, io.ErrUnexpectedEOF) && a.ctx.Err() == nil && a.expired() == h2Off {
		// x/net's word for a connection that ended without a GOAWAY: no
		// byte of a response came on this stream.
		err = fmt.Errorf("%w: the connection closed: %w", io.EOF, err)
	}
	fe := a.classify(failure.PhaseReadHead, err)
	a.fill(fe)
	a.end()
	return fe
}

// readHead fills h from res, checking it against the head limits.
func (a *h2Attempt) readHead(h *Head, res *http.Response) *failure.Error {
	*h = Head{Status: res.StatusCode, ContentLength: res.ContentLength}
	lim := a.t.opt.HeadLimits
	size, n := len(":status")+3+32, 0
	names := make([]string, 0, len(res.Header))
	for k, vs := range res.Header {
		names = append(names, k)
		n += len(vs)
		for _, v := range vs {
			size += len(k) + len(v) + 32
		}
	}
	if lim.Bytes > 0 && size > lim.Bytes {
		return failure.New(failure.HeadTooLarge, "HTTP/2 response head of "+strconv.Itoa(size)+" bytes (as HPACK counts them), over response_head_limit "+strconv.Itoa(lim.Bytes))
	}
	if lim.Fields > 0 && n > lim.Fields {
		return failure.New(failure.HeadTooLarge, "HTTP/2 response head with "+strconv.Itoa(n)+" fields, over "+strconv.Itoa(lim.Fields))
	}
	// In a stable order: HTTP/2 gives a map.
	slices.Sort(names)
	fields := make([]Field, 0, n)
	for _, k := range names {
		for _, v := range res.Header[k] {
			fields = append(fields, Field{Name: k, Value: v})
		}
	}
	h.Fields = dropHopByHop(fields, nil)
	switch {
	case a.req.Method == http.MethodHead || h.Status == http.StatusNoContent || h.Status == http.StatusNotModified ||
		h.ContentLength == 0:
		// No body; x/net declares a length of 0 for a HEADERS frame that
		// ended the stream, such as a gRPC trailers-only response, which
		// is passed on as one (no flush before its end).
		h.Mode = BodyNone
	case h.ContentLength > 0:
		h.Mode = BodyLength
	default:
		// The end of the stream ends the body; candor's HTTP/1.1 side
		// sends it chunked, so that trailers can follow.
		h.Mode = BodyChunked
	}
	return nil
}

// read is Body.Read for an HTTP/2 response.
func (a *h2Attempt) read(b *Body, p []byte) (int, error) {
	a.arm(h2Reading, a.t.opt.IdleTimeout, false)
	n, err := a.res.Body.Read(p)
	for b.mode == BodyNone && n > 0 && err == nil {
		// The stream of a response without a body still ends with
		// END_STREAM, maybe after trailers; DATA on it (a 204 with a
		// body) is not passed on.
		n, err = a.res.Body.Read(p)
	}
	if b.mode == BodyNone {
		n = 0
	}
	a.disarm(h2Reading)
	b.read += int64(n)
	a.recv += int64(n)
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF:
		a.finish(b)
		return n, io.EOF
	}
	fe := a.classify(failure.PhaseReadBody, err)
	if fe.Detail == "" {
		fe.Detail = "after " + strconv.FormatInt(b.read, 10) + " body bytes"
	}
	a.fill(fe)
	b.err = fe
	a.end()
	return n, fe
}

// finish ends a complete body: its trailers become Body.Trailer.
func (a *h2Attempt) finish(b *Body) {
	b.done = true
	if len(a.res.Trailer) > 0 {
		names := make([]string, 0, len(a.res.Trailer))
		for k := range a.res.Trailer {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, k := range names {
			// A name announced in Trailer but never sent has no values.
			for _, v := range a.res.Trailer[k] {
				b.trailer = append(b.trailer, Field{Name: k, Value: v})
			}
		}
		b.trailer = dropHopByHop(b.trailer, nil)
	}
	a.end()
}

// close is Body.Close for an HTTP/2 response: a body closed before its
// end resets the stream (RST_STREAM CANCEL); the connection stays.
func (a *h2Attempt) close(b *Body) {
	if !b.done && b.err == nil {
		b.done = true
		a.end()
	}
}

// wire returns the attempt's body bytes sent and received.
func (a *h2Attempt) wire() (sent, received int64) { return a.sent.Load(), a.recv }

// fill records where a failure happened.
func (a *h2Attempt) fill(fe *failure.Error) {
	fe.Upstream = a.t.opt.Name
	fe.Target = a.tg.Addr
	fe.Attempt = a.req.Attempt
	fe.Reused = a.reused.Load()
	fe.BytesSent, fe.BytesReceived = a.wire()
}

// end releases the attempt: its timer, its context (which stops a request
// body still being sent: RST_STREAM CANCEL), its response body, and, once
// the target was closed, the connection if it is now idle.
func (a *h2Attempt) end() {
	if a.ended {
		return
	}
	a.ended = true
	a.abandoned.Store(true)
	a.mu.Lock()
	a.head = true
	a.phase = h2Off
	if a.timer != nil {
		a.timer.Stop()
	}
	a.mu.Unlock()
	// The context first: x/net's Close of a response body waits for the
	// request side to finish, which a request body still waiting for the
	// client would delay for as long as the client takes.
	a.cancel(nil)
	if a.res != nil {
		a.res.Body.Close()
	}
	if a.tg.h2.closed.Load() {
		a.tg.h2.tr.CloseIdleConnections()
	}
}
