// Package upstream is candor's HTTP/1.1 client for upstream targets: a
// dialer that tags DNS, connect and TLS failures, a connection pool per
// target that guards against the keep-alive race, a strict response-head
// parser (RFC 9112) and strict body readers. Every failure is returned as a
// *failure.Error with its Kind, Phase, upstream, target, attempt and byte
// counts.
//
// net/http's client is deliberately not used: it accepts status 000, folded
// headers, bare LF and Content-Length beside chunked, and reports most
// malformations only as strings.
package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"candor/internal/failure"
)

// Options configure a Transport: one upstream's targets and settings.
type Options struct {
	// Name is the upstream's name, recorded in errors.
	Name string
	// ConnKey identifies the settings pooled connections depend on (TLS,
	// resolver); NewTargets adopts targets of a previous Transport only
	// when it is equal and not empty.
	ConnKey string
	// ConnectTimeout bounds DNS, TCP connect and TLS handshake together.
	ConnectTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for a complete response head
	// after the request was written.
	ResponseHeaderTimeout time.Duration
	// IdleTimeout bounds each wait while reading a body, and while the
	// upstream takes the request body.
	IdleTimeout time.Duration
	// PoolIdle is how long an idle connection is kept.
	PoolIdle time.Duration
	// MaxIdlePerTarget bounds idle connections per target; 0 disables
	// pooling.
	MaxIdlePerTarget int
	// HeadLimits bound response heads (and chunked trailers).
	HeadLimits Limits
	// Resolver is a DNS server's host:port for target names; empty means
	// the system resolver.
	Resolver string
	// TLS is the base TLS configuration for https targets (RootCAs,
	// ServerName); nil means system roots and the target's host.
	TLS *tls.Config
	// H2 speaks HTTP/2 to the targets (an upstream's protocol: h2): TLS
	// with ALPN h2 for https targets, prior-knowledge h2c for http
	// targets; see h2.go.
	H2 bool
}

// Transport sends requests to the targets of one upstream. It is safe for
// concurrent use.
type Transport struct {
	opt      Options
	resolver *net.Resolver
	targets  []*Target

	// from is the Transport targets were adopted from, if any.
	from *Transport

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// Target is one upstream server.
type Target struct {
	// URL is the configured target URL.
	URL string
	// Addr is host:port, for logs (never for clients).
	Addr string
	// Weight is the target's relative share of traffic (1 when unset).
	// Set it before the Transport is used; it never changes afterwards.
	Weight int

	// inflight counts requests in flight to the target, maintained by
	// Acquire and Release.
	inflight atomic.Int64
	// owner is the Transport that closes the target's pool.
	owner atomic.Pointer[Transport]
	// opened and reused count connections dialed and taken from the pool
	// (see ConnStats).
	opened, reused atomic.Uint64

	host string
	port uint16
	ip   netip.Addr // valid when host is an IP literal
	tls  *tls.Config
	pool pool
	// h2 is set when the Transport speaks HTTP/2 (Options.H2).
	h2 *h2Target
}

// New builds a Transport for the given target URLs (http or https, host
// and optional port, nothing else) and starts its idle-connection reaper.
func New(opt Options, urls []string) (*Transport, error) {
	specs := make([]TargetSpec, len(urls))
	for i, u := range urls {
		specs[i] = TargetSpec{URL: u, Weight: 1}
	}
	return NewTargets(opt, specs, nil)
}

// TargetSpec describes one target of NewTargets.
type TargetSpec struct {
	URL    string
	Weight int // at least 1
}

// NewTargets builds a Transport for targets. Targets of prev (which may be
// nil) with the same URL and weight are adopted, with their pooled
// connections and counters, when prev's connection settings (ConnKey,
// pool size and idle time) equal opt's: a reload that changes one target
// of an upstream does not reconnect to the others. prev then no longer
// closes them.
func NewTargets(opt Options, specs []TargetSpec, prev *Transport) (*Transport, error) {
	t := &Transport{opt: opt, resolver: net.DefaultResolver, stop: make(chan struct{})}
	adoptable := prev != nil && opt.ConnKey != "" && prev.opt.ConnKey == opt.ConnKey &&
		prev.opt.MaxIdlePerTarget == opt.MaxIdlePerTarget && prev.opt.PoolIdle == opt.PoolIdle &&
		h2Adoptable(prev.opt, opt)
	if opt.Resolver != "" {
		addr := opt.Resolver
		t.resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}
	}
next:
	for _, spec := range specs {
		if adoptable {
			for _, old := range prev.targets {
				if old.URL == spec.URL && old.Weight == max(spec.Weight, 1) && old.owner.CompareAndSwap(prev, t) {
					t.targets = append(t.targets, old)
					t.from = prev
					continue next
				}
			}
		}
		tg, err := t.newTarget(spec.URL)
		if err != nil {
			return nil, err
		}
		tg.Weight = max(spec.Weight, 1)
		tg.owner.Store(t)
		t.targets = append(t.targets, tg)
	}
	if opt.MaxIdlePerTarget > 0 && opt.PoolIdle > 0 {
		t.wg.Add(1)
		go t.reaper()
	}
	return t, nil
}

func (t *Transport) newTarget(raw string) (*Target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	tg := &Target{URL: raw, Weight: 1, host: u.Hostname(), pool: pool{max: t.opt.MaxIdlePerTarget}}
	port := u.Port()
	switch u.Scheme {
	case "http":
		if port == "" {
			port = "80"
		}
	case "https":
		if port == "" {
			port = "443"
		}
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if t.opt.TLS != nil {
			cfg = t.opt.TLS.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = tg.host
		}
		cfg.NextProtos = []string{"http/1.1"}
		tg.tls = cfg
	default:
		return nil, errors.New("upstream: unsupported scheme " + strconv.Quote(u.Scheme))
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return nil, errors.New("upstream: invalid port " + strconv.Quote(port))
	}
	tg.port = uint16(p)
	if ip, err := netip.ParseAddr(tg.host); err == nil {
		tg.ip = ip.Unmap()
	}
	tg.Addr = net.JoinHostPort(tg.host, port)
	if t.opt.H2 {
		t.setupH2(tg)
	}
	return tg, nil
}

// Targets returns the upstream's targets, in configuration order.
func (t *Transport) Targets() []*Target { return t.targets }

// Name returns the upstream's name.
func (t *Transport) Name() string { return t.opt.Name }

// Acquire counts a request in flight to tg; Release ends it. The proxy
// brackets every attempt with them; balancers and limits read InFlight.
func (tg *Target) Acquire() { tg.inflight.Add(1) }

// Release ends a request counted by Acquire.
func (tg *Target) Release() { tg.inflight.Add(-1) }

// InFlight returns the requests in flight to tg.
func (tg *Target) InFlight() int64 { return tg.inflight.Load() }

// IdleConns returns the number of idle pooled connections of tg.
func (tg *Target) IdleConns() int { return tg.pool.size() }

// ConnStats returns how many connections to tg were opened (dialed, TLS
// handshake included), reused (taken from the pool for a request) and
// discarded (idle ones closed instead of being reused: expired, failing the
// liveness probe, reaped, or not taken back by a full or closed pool), since
// the Transport was made. Metrics read it at scrape time.
func (tg *Target) ConnStats() (opened, reused, discarded uint64) {
	return tg.opened.Load(), tg.reused.Load(), tg.pool.discarded.Load()
}

// Close stops the reaper and closes idle connections. Requests in flight
// finish; their connections are closed rather than pooled afterwards.
func (t *Transport) Close() {
	t.stopOnce.Do(func() { close(t.stop) })
	t.wg.Wait()
	for _, tg := range t.targets {
		if tg.owner.Load() != t {
			continue // adopted by a newer Transport, which closes it
		}
		// A Transport abandoned before use (a reload that failed after
		// building it) hands adopted targets back to the running one.
		if t.from != nil && !t.from.closed() && tg.owner.CompareAndSwap(t, t.from) {
			continue
		}
		tg.pool.closeAll()
		if tg.h2 != nil {
			tg.h2.close()
		}
	}
}

func (t *Transport) closed() bool {
	select {
	case <-t.stop:
		return true
	default:
		return false
	}
}

func (t *Transport) reaper() {
	defer t.wg.Done()
	// Often enough that an idle connection is closed within an eighth of
	// PoolIdle of its limit: candor, not the upstream, closes first.
	every := min(max(t.opt.PoolIdle/8, 50*time.Millisecond), time.Second)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case now := <-tick.C:
			for _, tg := range t.targets {
				tg.pool.reap(now)
			}
		}
	}
}

// Request is what candor sends upstream. The transport writes Host and the
// framing fields (Content-Length or Transfer-Encoding) itself.
type Request struct {
	Method string
	// Target is the request-target in origin form ("/path?query").
	Target string
	Host   string
	// Header is the client's header, read but never modified. Hop-by-hop
	// fields (RFC 9110 §7.6.1), fields named in its Connection, framing
	// fields, Expect, Proxy-Authorization and fields that Extra sets are
	// not forwarded; see [skipRequestField].
	Header http.Header
	// Extra are fields candor sets (request id, forwarding fields),
	// written after Header's. A field of Extra with an empty Value is not
	// written, but still keeps Header's field of that name out.
	Extra []Field
	// Body is nil for no body. ContentLength is its length, or -1 when
	// unknown (sent chunked).
	Body          io.Reader
	ContentLength int64
	// Replayable reports that the request may be sent again when a reused
	// connection turns out dead before any response byte: the method is
	// idempotent or the request carries Idempotency-Key, and there is no
	// body or GetBody can produce it again.
	Replayable bool
	// GetBody returns a fresh copy of a buffered body for a replay; nil
	// when the body cannot be replayed.
	GetBody func() io.Reader
	// HeaderTimeout bounds this attempt's wait for the response head; 0
	// means the upstream's ResponseHeaderTimeout.
	HeaderTimeout time.Duration
	// Deadline, when set, bounds the attempt's connect and response-head
	// waits (a route's overall retry timeout). Hitting it is a timeout
	// (504), never a 502.
	Deadline time.Time
	// Attempt numbers the attempt, from 1, for error records.
	Attempt int
	// Upgrade, when not empty, asks the upstream to switch protocols (RFC
	// 9110 §7.8): the transport sends "Connection: Upgrade" and "Upgrade:
	// " + Upgrade, a list of protocol tokens the caller has already
	// checked. A 101 answer is then valid if it switches to one of them,
	// and its connection is the caller's through [Response.Hijack]; any
	// other answer is an ordinary response. An upgrade request always goes
	// on a fresh connection (never a pooled one, so there is no keep-alive
	// race), is never replayed whatever Replayable says, and its
	// connection is never pooled afterwards.
	Upgrade string
}

// Response is a response whose head was valid. Its Body must be read to
// io.EOF or closed.
type Response struct {
	*Head
	Body *Body
	// Reused reports that a pooled connection carried the request.
	Reused bool
	// Timing of the attempt.
	Timing Timing
}

// Hijack takes over the connection of a 101 (Switching Protocols)
// response: it returns the connection and its buffered reader, which may
// already hold bytes of the new protocol that arrived with the head. The
// request's context no longer affects the connection, which has no
// deadlines and is never pooled; the caller closes it. Body must not be
// used afterwards. Hijack fails for any other status, when called twice,
// and with a ClientCanceled *failure.Error when the request's context
// ended first (the connection is then closed).
func (r *Response) Hijack() (net.Conn, *bufio.Reader, error) {
	b := r.Body
	if r.Status != http.StatusSwitchingProtocols {
		return nil, nil, errors.New("upstream: Hijack of a " + strconv.Itoa(r.Status) + " response")
	}
	if b.closed || b.done || b.err != nil {
		return nil, nil, errors.New("upstream: Hijack of a closed or hijacked response")
	}
	b.freeze()
	b.done, b.closed = true, true
	c := b.c
	c.idleLimit = 0
	if !b.att.end() {
		// The cancellation hook ran and poisoned the deadlines.
		c.close()
		return nil, nil, failure.Wrap(failure.ClientCanceled, "before the upgraded connection was taken over", b.att.ctx.Err())
	}
	c.ctx = nil
	c.nc.SetDeadline(time.Time{})
	return c.nc, c.br, nil
}

// Timing records when the phases of an attempt ended, as offsets from its
// start. A zero offset means the phase did not happen (a reused connection
// has no DNS, connect or TLS).
type Timing struct {
	DNS, Connect, TLS, Wrote, FirstByte time.Duration
}

// attemptFields is the number of response fields an attempt has room for
// without an allocation of their own.
const attemptFields = 12

// attempt is the state of one request on one connection. A successful
// attempt's Response, Body and Head live in it, so that an attempt costs
// one allocation for all of them.
type attempt struct {
	t      *Transport
	tg     *Target
	ctx    context.Context
	req    *Request
	start  time.Time
	stop   func() bool // stops the cancellation hook
	reused bool
	sent0  int64 // conn counters at the start
	recv0  int64
	timing Timing

	head   Head
	fields [attemptFields]Field // head.Fields' first backing array
	resp   Response
	body   Body
}

// fill records where a failure happened.
func (a *attempt) fill(fe *failure.Error, c *conn) {
	fe.Upstream = a.t.opt.Name
	fe.Target = a.tg.Addr
	fe.Attempt = a.req.Attempt
	fe.Reused = a.reused
	if c != nil {
		fe.BytesSent = c.sent - a.sent0
		fe.BytesReceived = c.recv - a.recv0
	}
}

// end stops watching the request's context.
func (a *attempt) end() bool {
	if a.stop == nil {
		return true
	}
	ok := a.stop()
	a.stop = nil
	return ok
}

// release returns c to the pool after a complete response, when the
// connection may carry another request.
func (a *attempt) release(c *conn) {
	hookStopped := a.end()
	if !hookStopped || a.t.closed() || a.t.opt.MaxIdlePerTarget == 0 || c.idleLimit <= 0 || c.br.Buffered() > 0 {
		// A canceled context may have set a deadline; bytes beyond the
		// response would poison the next one.
		c.close()
		return
	}
	c.nc.SetDeadline(time.Time{})
	c.ctx = nil
	a.tg.pool.put(c, time.Now())
}

// RoundTrip sends req to tg and reads the response head. On success the
// caller owns resp.Body. On failure the error is a *failure.Error.
//
// The keep-alive race: a pooled connection is probed before reuse, and when
// a reused connection dies before any response byte arrives, a Replayable
// request (or one of which nothing was sent) is sent once more on a fresh
// connection.
func (t *Transport) RoundTrip(ctx context.Context, tg *Target, req *Request) (*Response, error) {
	if tg.h2 != nil {
		return t.roundTripH2(ctx, tg, req)
	}
	resp, err, retry := t.try(ctx, tg, req, false)
	if retry && (req.Body == nil || req.GetBody != nil) {
		if req.GetBody != nil {
			req.Body = req.GetBody()
		}
		resp, err, _ = t.try(ctx, tg, req, true)
	}
	return resp, err
}

func (t *Transport) try(ctx context.Context, tg *Target, req *Request, fresh bool) (*Response, error, bool) {
	a := &attempt{t: t, tg: tg, ctx: ctx, req: req, start: time.Now()}
	var c *conn
	if !fresh && t.opt.MaxIdlePerTarget > 0 && req.Upgrade == "" {
		c = tg.pool.get(a.start)
	}
	if c != nil {
		a.reused = true
		tg.reused.Add(1)
	} else {
		var err error
		if c, err = t.dial(a); err != nil {
			return nil, err, false
		}
	}
	c.uses++
	a.sent0, a.recv0 = c.sent, c.recv
	c.ctx = ctx
	if c.interrupt == nil {
		c.interrupt = c.cancelIO // one method value per connection
	}
	a.stop = context.AfterFunc(ctx, c.interrupt)

	if err := t.write(a, c); err != nil {
		fe := failure.Classify(ctx, failure.PhaseWrite, err)
		if errors.Is(ctx.Err(), context.Canceled) {
			fe = &failure.Error{Kind: failure.ClientCanceled, Phase: failure.PhaseWrite, Err: err}
		}
		if fe.Kind.Row().Phase == failure.PhaseClient {
			// The client's body failed (or the client went away): the
			// request is cut off short of its end (no last chunk, or
			// fewer bytes than its Content-Length) and its connection
			// closed, so the upstream never takes it as complete. Not
			// retried, and no early response is looked for.
			a.fill(fe, c)
			a.end()
			c.close()
			return nil, fe, false
		}
		// The upstream may have answered early (a 413, say) and closed;
		// its answer is more useful than the write error.
		if resp, ok := t.earlyResponse(a, c); ok {
			return resp, nil, false
		}
		a.fill(fe, c)
		a.end()
		c.close()
		retry := a.reused && fe.BytesReceived == 0 && (req.Replayable || fe.BytesSent == 0)
		return nil, fe, retry
	}
	a.timing.Wrote = time.Since(a.start)
	resp, err := t.readResponse(a, c)
	if err != nil {
		fe := failure.Classify(ctx, failure.PhaseReadHead, err)
		a.fill(fe, c)
		a.end()
		c.close()
		retry := a.reused && fe.BytesReceived == 0 && req.Replayable &&
			(fe.Kind == failure.ClosedBeforeResponse || fe.Kind == failure.ResetBeforeResponse)
		return nil, fe, retry
	}
	return resp, nil, false
}

// earlyResponse reads a response that arrived while the request was being
// written, with a short deadline.
func (t *Transport) earlyResponse(a *attempt, c *conn) (*Response, bool) {
	if c.br.Buffered() == 0 && !alivePending(c) {
		return nil, false
	}
	c.nc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	h := &a.head
	h.Fields = a.fields[:0]
	if err := readHeadInto(h, &c.hs, c.br, t.opt.HeadLimits, a.req.Method, a.req.Upgrade); err != nil {
		return nil, false
	}
	h.Close = true
	return t.respond(a, c, h), true
}

// alivePending reports whether the socket has bytes to read, without
// waiting.
func alivePending(c *conn) bool {
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err := c.br.Peek(1)
	return err == nil
}

func (t *Transport) readResponse(a *attempt, c *conn) (*Response, error) {
	wait := a.req.HeaderTimeout
	if wait <= 0 {
		wait = t.opt.ResponseHeaderTimeout
	}
	if err := c.setReadDeadline(a.req.bound(time.Now().Add(wait))); err != nil {
		return nil, err
	}
	h := &a.head
	h.Fields = a.fields[:0]
	if err := readHeadInto(h, &c.hs, c.br, t.opt.HeadLimits, a.req.Method, a.req.Upgrade); err != nil {
		return nil, err
	}
	a.timing.FirstByte = time.Since(a.start)
	if h.KeepAlive > 0 {
		hint := time.Duration(h.KeepAlive) * time.Second
		// Stop reusing a second before the upstream's own close.
		c.idleLimit = min(c.idleLimit, hint-time.Second)
	}
	return t.respond(a, c, h), nil
}

func (t *Transport) respond(a *attempt, c *conn, h *Head) *Response {
	b := &a.body
	*b = Body{c: c, att: a, mode: h.Mode, left: h.ContentLength}
	if h.Close || a.req.Upgrade != "" {
		// An upstream that declined an upgrade may still be in a state
		// that HTTP does not describe: its connection is not reused.
		c.idleLimit = 0
	}
	resp := &a.resp
	*resp = Response{Head: h, Body: b, Reused: a.reused, Timing: a.timing}
	return resp
}

// write sends the request head and body.
func (t *Transport) write(a *attempt, c *conn) error {
	req := a.req
	bw := c.bw
	bw.WriteString(req.Method)
	bw.WriteByte(' ')
	bw.WriteString(req.Target)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(req.Host)
	bw.WriteString("\r\n")
	conn := connectionOptions(req.Header)
	for k, vs := range req.Header {
		if skipRequestField(k, conn, req.Extra) {
			continue
		}
		for _, v := range vs {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	for _, f := range req.Extra {
		if f.Value == "" {
			continue
		}
		bw.WriteString(f.Name)
		bw.WriteString(": ")
		bw.WriteString(f.Value)
		bw.WriteString("\r\n")
	}
	if req.Upgrade != "" {
		// RFC 9110 §7.8: a sender of Upgrade also sends the "upgrade"
		// connection option. The client's own Connection and Upgrade
		// were hop-by-hop and are not forwarded.
		bw.WriteString("Connection: Upgrade\r\nUpgrade: ")
		bw.WriteString(req.Upgrade)
		bw.WriteString("\r\n")
	}
	switch {
	case req.Body != nil && req.ContentLength < 0:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	case req.ContentLength > 0 || bodyExpected(req.Method):
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(max(req.ContentLength, 0), 10))
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
	if req.Body != nil && req.ContentLength != 0 {
		if err := t.writeBody(c, req); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// requestHopByHop are request fields never forwarded (canonical names):
//   - the hop-by-hop fields of RFC 9110 §7.6.1 and their relatives:
//     Connection, Keep-Alive, Proxy-Connection, TE, Trailer (the client's
//     trailer fields are not forwarded either), Transfer-Encoding, Upgrade
//     (an upgrade candor relays is requested with candor's own Upgrade,
//     see [Request.Upgrade]; "Upgrade: h2c" never is) and HTTP2-Settings
//     (RFC 7540 §3.2, meaningless without the h2c upgrade);
//   - Host and Content-Length: candor writes Host from [Request.Host] and
//     the framing (Content-Length or chunked) from the body it actually
//     sends, never from the client's fields;
//   - Expect: candor's server answers 100-continue itself, and any other
//     expectation is not passed on;
//   - Proxy-Authorization: credentials for a proxy that asked for them
//     (RFC 9110 §11.7.2); candor asks for none, and a reverse proxy that
//     relayed them would hand a forward proxy's credentials to the origin;
//   - Forwarded and X-Real-Ip: candor sets Forwarded (and X-Forwarded-*)
//     through Extra; X-Real-Ip it does not set, and a client's is spoofable.
var requestHopByHop = [...]string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer",
	"Transfer-Encoding", "Upgrade", "Http2-Settings", "Content-Length", "Host",
	"Expect", "Proxy-Authorization", "Forwarded", "X-Real-Ip",
}

// skipRequestField reports whether the client's field name is not
// forwarded: a field of requestHopByHop, a field named in the client's
// Connection, or a field Extra sets (or its underscore spelling).
//
// A Connection option can only remove end-to-end fields of the client's:
// Host, the framing and Extra's fields are candor's own, written whatever
// Connection says, so "Connection: Host" or "Connection: close,
// Content-Length" changes nothing of what frames or routes the request.
func skipRequestField(name string, connection []string, extra []Field) bool {
	// Canonical already for a header read by net/http (no allocation
	// then); canonicalised for any other.
	name = textproto.CanonicalMIMEHeaderKey(name)
	for _, h := range requestHopByHop {
		if name == h {
			return true
		}
	}
	for _, v := range connection {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.Trim(tok, " \t"), name) {
				return true
			}
		}
	}
	for _, f := range extra {
		// CGI and WSGI servers read X_Forwarded_For as X-Forwarded-For:
		// an underscore spelling of a field candor sets is dropped too.
		if strings.EqualFold(f.Name, name) || strings.ContainsRune(name, '_') && strings.EqualFold(f.Name, strings.ReplaceAll(name, "_", "-")) {
			return true
		}
	}
	return false
}

// connectionOptions returns the values of h's Connection field, under its
// canonical key (a header read by net/http) or any other spelling.
func connectionOptions(h http.Header) []string {
	if v, ok := h["Connection"]; ok {
		return v
	}
	var out []string
	for k, v := range h {
		if len(k) == len("Connection") && strings.EqualFold(k, "Connection") {
			out = append(out, v...)
		}
	}
	return out
}

// bound returns d, or the request's Deadline when that is earlier.
func (r *Request) bound(d time.Time) time.Time {
	if !r.Deadline.IsZero() && r.Deadline.Before(d) {
		return r.Deadline
	}
	return d
}

// clientBodyError marks an error reading the client's request body, so that
// it is not blamed on the upstream.
type clientBodyError struct{ err error }

func (e clientBodyError) Error() string { return "reading the request body: " + e.err.Error() }
func (e clientBodyError) Unwrap() error { return e.err }

// bodySource reads the client's body and tags its errors.
type bodySource struct{ r io.Reader }

func (s bodySource) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		return n, clientBodyError{err}
	}
	return n, err
}

func (t *Transport) writeBody(c *conn, req *Request) error {
	c.writeIdle = t.opt.IdleTimeout
	defer func() { c.writeIdle = 0 }()
	src := bodySource{req.Body}
	bp := bodyBufs.Get().(*[]byte)
	defer bodyBufs.Put(bp)
	buf := *bp
	if left := req.ContentLength; left > 0 {
		// Read the client's body in pieces of up to 64KiB and hand each
		// to the buffered writer whole: a piece larger than its buffer
		// goes to the socket in one write, so a 64KiB body costs a few
		// system calls rather than one read and one write per 4KiB.
		for left > 0 {
			p := buf
			if int64(len(p)) > left {
				p = p[:left]
			}
			n, err := src.Read(p)
			if n > 0 {
				left -= int64(n)
				if _, werr := c.bw.Write(p[:n]); werr != nil {
					return werr
				}
			}
			if err == io.EOF && left > 0 {
				err = clientBodyError{io.ErrUnexpectedEOF}
			}
			if err != nil && err != io.EOF {
				return tagClient(err, 0)
			}
			if err == io.EOF {
				break
			}
		}
		return nil
	}
	// Chunked (RFC 9112 §7.1), one chunk per read of the client body.
	for {
		n, err := src.Read(buf)
		if n > 0 {
			c.bw.WriteString(strconv.FormatInt(int64(n), 16))
			c.bw.WriteString("\r\n")
			c.bw.Write(buf[:n])
			if _, werr := c.bw.WriteString("\r\n"); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			_, werr := c.bw.WriteString("0\r\n\r\n")
			return werr
		}
		if err != nil {
			return tagClient(err, 0)
		}
	}
}

// bodyBufs holds the 64KiB buffers request bodies are copied through.
var bodyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// tagClient turns a client body error into a typed failure: the body
// reader's own *failure.Error (the caller knows the cause: a body too
// large, malformed, stalled, or a client gone) when it returned one,
// otherwise client_body_invalid.
func tagClient(err error, _ int64) error {
	if cbe, ok := errors.AsType[clientBodyError](err); ok {
		if fe, ok := errors.AsType[*failure.Error](cbe.err); ok {
			return fe
		}
		return failure.Wrap(failure.ClientBodyInvalid, "", err)
	}
	return err
}

// bodyExpected reports methods whose requests conventionally carry a body,
// so that an empty one is declared with Content-Length: 0 (RFC 9110 §8.6).
func bodyExpected(method string) bool {
	return method == "POST" || method == "PUT" || method == "PATCH"
}

// dial resolves, connects and (for https) completes the TLS handshake, all
// within ConnectTimeout.
func (t *Transport) dial(a *attempt) (*conn, error) {
	tg := a.tg
	ctx, cancel := context.WithDeadline(a.ctx, a.req.bound(time.Now().Add(t.opt.ConnectTimeout)))
	defer cancel()
	fail := func(p failure.Phase, err error) error {
		fe := failure.Classify(a.ctx, p, err)
		a.fill(fe, nil)
		return fe
	}
	var literal [1]netip.Addr // an IP literal target's address, on the stack
	ips, err := t.resolve(ctx, tg, literal[:0])
	if err != nil {
		return nil, fail(failure.PhaseDNS, err)
	}
	if !tg.ip.IsValid() {
		a.timing.DNS = time.Since(a.start)
	}
	nc, _, err := dialFirst(ctx, ips, tg.port)
	if err != nil {
		return nil, fail(failure.PhaseConnect, err)
	}
	a.timing.Connect = time.Since(a.start)
	c := &conn{raw: nc, nc: nc, idleLimit: t.opt.PoolIdle}
	if tg.tls != nil {
		tc, err := handshake(ctx, nc, tg.tls)
		if err != nil {
			return nil, fail(failure.PhaseTLS, err)
		}
		c.nc = tc
		a.timing.TLS = time.Since(a.start)
	}
	c.br = bufio.NewReaderSize(c, 4096)
	c.bw = bufio.NewWriterSize(c, 4096)
	tg.opened.Add(1)
	return c, nil
}

// resolve returns tg's addresses: its IP literal (appended to buf), or
// what the resolver answers for its name. The error is unclassified (phase
// dns).
func (t *Transport) resolve(ctx context.Context, tg *Target, buf []netip.Addr) ([]netip.Addr, error) {
	if tg.ip.IsValid() {
		return append(buf, tg.ip), nil
	}
	ips, err := t.resolver.LookupNetIP(ctx, "ip", tg.host)
	if err == nil && len(ips) == 0 {
		err = &net.DNSError{Err: "no addresses", Name: tg.host, IsNotFound: true}
	}
	return ips, err
}

// errNoAddress is dialFirst's error for an empty list of addresses.
var errNoAddress = errors.New("upstream: no address to connect to")

// dialFirst connects to the first of ips that accepts, in order, until
// ctx ends. The error is unclassified (phase connect).
func dialFirst(ctx context.Context, ips []netip.Addr, port uint16) (net.Conn, netip.AddrPort, error) {
	var d net.Dialer
	var ap netip.AddrPort
	err := errNoAddress
	for _, ip := range ips {
		ap = netip.AddrPortFrom(ip.Unmap(), port)
		// Not Dialer.DialTCP: it turns an empty local address into a
		// bind to port 0 before connecting, and such an explicitly bound
		// port cannot reuse one in TIME_WAIT, so under connection churn the
		// local ports run out (EADDRINUSE). DialContext leaves the choice to
		// connect(2). The address string costs one allocation per new
		// connection, not per request.
		var c net.Conn
		if c, err = d.DialContext(ctx, "tcp", ap.String()); err == nil {
			return c, ap, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, ap, err
}

// handshake runs the TLS client handshake on nc, closing nc when it
// fails. The error is unclassified (phase tls).
func handshake(ctx context.Context, nc net.Conn, cfg *tls.Config) (*tls.Conn, error) {
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return tc, nil
}
