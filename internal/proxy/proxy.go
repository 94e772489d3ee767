// Package proxy is candor's request path: it strings together the router,
// the balancer, the upstream transport, the verdict on the response and the
// responder, and writes one log record per request.
//
//	request -> route -> pick target -> upstream attempt -> verdict -> respond
//
// A valid upstream response, whatever its status, is passed through with
// hop-by-hop fields removed. Every outcome candor generates itself comes
// from the cause table (package failure) and is rendered by package
// respond.
package proxy

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/textproto"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"candor/internal/circuit"
	"candor/internal/failure"
	"candor/internal/respond"
	"candor/internal/retry"
	"candor/internal/router"
	"candor/internal/telemetry"
	"candor/internal/upstream"
)

// Route is a route of one configuration generation.
type Route struct {
	Name     string
	Upstream *upstream.Transport
	Picker   Picker
	// Strict is nil for streaming routes.
	Strict *Strict
	// Retry is the route's retry policy.
	Retry Retry
	// Limiter bounds requests in flight to the upstream; nil is
	// unlimited.
	Limiter *circuit.Limiter
	// Health receives the outcome of every attempt; nil for none.
	Health Reporter
	// Key extracts the balancing key (consistent hashing); nil for none.
	Key func(*http.Request) string
	// Maintenance, when set, answers every new request 503
	// route_maintenance. It may be flipped at any time (admin API).
	Maintenance atomic.Bool
	// Upgrade allows protocol upgrades (WebSocket), relayed as tunnels;
	// nil forwards upgrade requests as plain requests. See [Upgrade].
	Upgrade *Upgrade
	// MaxBody is the largest request body accepted, 0 for no limit: a
	// larger Content-Length is answered 413 before the body is read, and
	// a body of unknown length (chunked) that grows past it is cut off
	// and answered 413.
	MaxBody int64
}

// Picker chooses a target for a request with balancing key key. Pick
// returns nil when no target can be used; Usable then tells whether that is
// because every usable target is at its concurrency limit (overload) or
// because there are none.
type Picker interface {
	Pick(key string) *upstream.Target
}

// Reporter takes the outcome of each upstream attempt (passive health):
// fe is nil on success, status is the upstream's status when there was a
// response.
type Reporter interface {
	Report(tg *upstream.Target, fe *failure.Error, status int)
}

// Retry is a route's retry policy; see config.Retry.
type Retry struct {
	// Attempts is the most attempts per request, at least 1.
	Attempts int
	// PerTry bounds each attempt's wait for the response head; 0 is the
	// upstream's default.
	PerTry time.Duration
	// Timeout bounds all attempts together; 0 is none.
	Timeout time.Duration
	// Backoff and MaxBackoff shape the jittered exponential back-off.
	Backoff, MaxBackoff time.Duration
	// OnStatus lists upstream statuses that are retried.
	OnStatus []int
	// BodyBuffer is the largest request body buffered for replay.
	BodyBuffer int64
	// Budget caps retries; nil allows none beyond the first attempt.
	Budget *retry.Budget
}

// Strict is a route's strict mode: responses are buffered up to Buffer
// bytes and validated before any byte is sent to the client.
type Strict struct {
	Buffer int64
	// JSON requires a valid JSON body when the media type is JSON.
	JSON bool
}

// Table is the immutable routing state of one configuration generation.
type Table struct {
	Router *router.Table
	// Routes are indexed like the Router's rules.
	Routes []*Route
	// TrustedProxies are the networks of proxies whose forwarding fields
	// are kept and appended to; see [forwarding].
	TrustedProxies []netip.Prefix
}

// Options configure a Handler.
type Options struct {
	// Tracer, when set, traces every request: a server span per request
	// and a client span per upstream attempt, whose W3C trace context
	// replaces the client's in the upstream request. Nil traces nothing.
	Tracer *telemetry.Tracer
	// Log receives one record per gateway failure, and per request when
	// Access is set.
	Log *slog.Logger
	// Access logs successful requests too.
	Access bool
	// Sample is the fraction of successful requests logged when Access
	// is set, 0 to 1 (outside that range: 1); failures are always logged.
	Sample float64
	// Query logs query strings, which may carry secrets; by default only
	// the path is logged.
	Query bool
	// Recorder receives every finished request's record (the admin API's
	// recent failures and rates); nil for none. It must not keep the
	// pointer.
	Recorder Recorder
	// Metrics counts every finished request (and requests in flight);
	// nil for none.
	Metrics *telemetry.Metrics
}

// Recorder takes a finished request's record; see [telemetry.Recent].
type Recorder interface {
	Record(*telemetry.Record)
}

// Handler is the gateway's http.Handler. Its Table can be swapped at any
// time; each request uses the Table that was current when it started.
type Handler struct {
	table  atomic.Pointer[Table]
	tracer *telemetry.Tracer // nil when not tracing
	log    *slog.Logger
	access bool
	sample float64
	query  bool
	bufs   sync.Pool
	// tunnels are the upgraded connections being relayed (tunnel.go).
	tunnels tunnelSet
	// recorder receives every finished record; nil for none.
	recorder Recorder
	// metrics counts requests; nil for none.
	metrics *telemetry.Metrics
}

// New returns a Handler serving t.
func New(t *Table, opt Options) *Handler {
	h := &Handler{log: opt.Log, access: opt.Access, sample: opt.Sample, query: opt.Query}
	h.tracer = opt.Tracer
	h.recorder = opt.Recorder
	h.metrics = opt.Metrics
	if h.sample < 0 || h.sample > 1 {
		h.sample = 1
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.bufs.New = func() any { b := make([]byte, 32<<10); return &b }
	h.table.Store(t)
	return h
}

// Swap installs t for new requests and returns the previous Table.
func (h *Handler) Swap(t *Table) *Table { return h.table.Swap(t) }

// exchange is the state of one request.
type exchange struct {
	w           http.ResponseWriter
	r           *http.Request
	id          string
	rec         telemetry.Record
	span        *telemetry.Span // nil when not tracing
	wroteHeader bool
	// body is the upstream response body, once there is one.
	body *upstream.Body
	// inflight is a target whose in-flight count this exchange holds
	// while an attempt runs; the panic handler releases it.
	inflight *upstream.Target
	// abort reports that the response must be cut off: its status was
	// sent and its body broke.
	abort bool

	// The upstream request, its extra fields and the record's tries live
	// here, so that they cost no allocations of their own (see outbound
	// and attempts).
	req   upstream.Request
	extra [7]upstream.Field // five of outbound's, traceparent, tracestate
	tries [2]telemetry.Try
	// cbody reads the client's request body for the upstream request.
	cbody clientBody
	// trusted are the generation's trusted proxies, maxBody the route's
	// max_body (0: none).
	trusted []netip.Prefix
	maxBody int64
}

// ServeHTTP handles one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	x := &exchange{w: w, r: r, id: respond.RequestID(r.Header)}
	x.rec = telemetry.Record{
		Time: start, RequestID: x.id, Method: r.Method, Host: r.Host,
		Peer: r.RemoteAddr, Path: r.URL.Path, Tries: x.tries[:0],
	}
	if h.query && r.URL.RawQuery != "" {
		x.rec.Path += "?" + r.URL.RawQuery
	}
	if h.tracer != nil {
		x.span = h.tracer.Start(r, x.id)
		x.rec.TraceID = x.span.TraceID()
		// The client's trace context is never forwarded as is: each
		// attempt sends its own (attempt.go), continuing the client's
		// trace only when the client is trusted.
		r.Header.Del("Traceparent")
		r.Header.Del("Tracestate")
	}
	defer func() {
		if v := recover(); v != nil {
			h.recovered(x, v)
		}
		if x.body != nil && !x.rec.Failed {
			x.rec.BytesSent, x.rec.BytesReceived = x.body.Wire()
		}
		x.rec.Total = time.Since(start)
		x.span.End(&x.rec)
		// Failures are always logged; successes only with the access log
		// on (config log.access), sampled.
		if x.rec.Failed || h.access && (h.sample >= 1 || rand.Float64() < h.sample) {
			x.rec.Log(r.Context(), h.log)
		}
		if h.recorder != nil {
			h.recorder.Record(&x.rec)
		}
		if h.metrics != nil {
			h.metrics.Observe(&x.rec)
		}
		if x.abort {
			// Cut the response off: HTTP/1.1 closes the connection
			// short of Content-Length or without the last chunk;
			// HTTP/2 resets the stream.
			panic(http.ErrAbortHandler)
		}
	}()
	h.serve(x)
}

// recovered turns a panic into a 500, or an abort when the status was
// already sent.
func (h *Handler) recovered(x *exchange, v any) {
	if x.inflight != nil {
		x.inflight.Release()
		x.inflight = nil
	}
	fe := failure.New(failure.InternalError, "panic: "+panicText(v))
	x.rec.SetFailure(fe)
	x.rec.Err = string(debug.Stack())
	if x.wroteHeader {
		x.abort = true
		return
	}
	h.fail(x, fe)
}

func (h *Handler) serve(x *exchange) {
	r := x.r
	t := h.table.Load()
	i := t.Router.Match(r.Host, r.URL.Path)
	if i < 0 {
		h.fail(x, failure.New(failure.NoRoute, ""))
		return
	}
	rt := t.Routes[i]
	x.trusted, x.maxBody = t.TrustedProxies, rt.MaxBody
	x.rec.Route = rt.Name
	x.rec.Upstream = rt.Upstream.Name()
	if h.metrics != nil {
		g := h.metrics.InFlight(rt.Name)
		g.Inc()
		defer g.Dec()
	}
	if rt.Maintenance.Load() {
		h.fail(x, h.selectError(failure.RouteMaintenance, rt))
		return
	}
	if r.Method == http.MethodConnect {
		h.fail(x, failure.New(failure.MethodNotSupported, "CONNECT"))
		return
	}
	if rt.MaxBody > 0 && r.ContentLength > rt.MaxBody {
		// Refused before any of the body is read and before an upstream
		// is asked (a client waiting for 100 Continue never sends it).
		h.fail(x, failure.New(failure.RequestBodyTooLarge, "Content-Length "+itoa(r.ContentLength)+" over the route's max_body "+itoa(rt.MaxBody)))
		return
	}
	if protocols := rt.Upgrade.offered(r); protocols != "" {
		h.tunnel(x, rt, protocols)
		return
	}
	req := x.outbound()
	// A replayable body is buffered before a slot is taken, so that slow
	// uploads do not hold the upstream's concurrency slots.
	if fe := bufferBody(r, req, rt.Retry); fe != nil {
		h.fail(x, fe)
		return
	}
	ctx := r.Context()
	if !rt.Limiter.Acquire(ctx) {
		if ctx.Err() != nil {
			h.fail(x, failure.Wrap(failure.ClientCanceled, "waiting for an upstream slot", ctx.Err()))
		} else {
			h.fail(x, h.selectError(failure.Overloaded, rt))
		}
		return
	}
	// The slot is held until the response is complete, body included.
	defer rt.Limiter.Release()
	resp, tg := h.attempts(x, rt, req)
	if resp == nil {
		return
	}
	defer tg.Release()
	x.body = resp.Body
	x.rec.Target = tg.Addr
	x.rec.Reused = resp.Reused
	x.rec.DNS, x.rec.Connect, x.rec.TLS, x.rec.FirstByte = resp.Timing.DNS, resp.Timing.Connect, resp.Timing.TLS, resp.Timing.FirstByte
	if rt.Strict != nil {
		h.buffered(x, rt.Strict, resp)
	} else {
		h.stream(x, resp)
	}
	rt.report(tg, resp)
}

// fail answers with fe's cause, unless the client is gone.
func (h *Handler) fail(x *exchange, fe *failure.Error) {
	x.rec.SetFailure(fe)
	x.rec.Source = telemetry.SourceGateway
	x.rec.Status = fe.Kind.Status()
	if fe.Kind == failure.ClientCanceled {
		// Nothing is written, and the connection is cut rather than left
		// to net/http, which would answer an empty 200 for a handler that
		// wrote nothing.
		x.abort = true
		return
	}
	x.wroteHeader = true
	w := x.w
	if fe.Kind.Row().Phase == failure.PhaseClient && x.r.ProtoMajor == 1 {
		// The client's fault (a body too large, broken or stalled, a
		// CONNECT): the rest of what it sends is not read, so its
		// HTTP/1.1 connection is closed after the answer. (An HTTP/2
		// stream ends by itself; "Connection: close" there would make
		// the server shut the whole connection down.)
		w = closeAfter{w}
	}
	respond.Problem(w, x.r, fe.Kind, x.id)
}

// asFailure returns err as a *failure.Error.
func asFailure(ctx context.Context, err error) *failure.Error {
	if fe, ok := errors.AsType[*failure.Error](err); ok {
		return fe
	}
	return failure.Classify(ctx, failure.PhaseNone, err)
}

// copyHead copies the upstream's end-to-end fields to the client's
// response, with Content-Length length when it is not negative, as
// http.Header.Add and Set would, but with one backing array
// for all the values: each is a full slice expression of length and
// capacity 1, so that a repeated field (or a later Add) appends to a copy
// rather than into its neighbour.
func (x *exchange) copyHead(resp *upstream.Response, length int64) {
	hdr := x.w.Header()
	vals := make([]string, len(resp.Fields)+2)
	for i, f := range resp.Fields {
		// The name is usually canonical already, which costs no copy.
		name := textproto.CanonicalMIMEHeaderKey(f.Name)
		if vs, ok := hdr[name]; ok {
			hdr[name] = append(vs, f.Value)
			continue
		}
		vals[i] = f.Value
		hdr[name] = vals[i : i+1 : i+1]
	}
	n := len(resp.Fields)
	vals[n] = x.id
	hdr[respond.HeaderRequestID] = vals[n : n+1 : n+1]
	if _, ok := hdr["Content-Type"]; !ok {
		// Pass the absence through: net/http would otherwise sniff a
		// type from the body and relabel the upstream's response.
		hdr["Content-Type"] = nil
	}
	if length >= 0 {
		vals[n+1] = itoa(length)
		hdr["Content-Length"] = vals[n+1 : n+2 : n+2]
	}
	x.rec.Status = resp.Status
	x.rec.Source = telemetry.SourceUpstream
}

// stream passes the response through as it arrives.
//
// Body bytes that arrived with the head are read before the status is
// committed, up to one buffer: a small response that is broken anywhere, or
// a large one broken in its first buffer, still gets an honest 502 (or 504)
// instead of a cut-off response. Once the status is committed, whatever was
// written is flushed before every wait on the upstream, so that a later
// fault shows the client a visibly cut-off response, and so that
// long-polling and event-stream clients get each piece as it is produced.
func (h *Handler) stream(x *exchange, resp *upstream.Response) {
	body := resp.Body
	defer body.Close()
	bp := h.bufs.Get().(*[]byte)
	defer h.bufs.Put(bp)
	buf := *bp
	flusher, _ := x.w.(http.Flusher)

	var n int
	var rerr error
	for rerr == nil && n < len(buf) && (body.Buffered() > 0 || resp.Mode == upstream.BodyNone) {
		var m int
		m, rerr = body.Read(buf[n:])
		n += m
	}
	if rerr != nil && rerr != errEOF {
		h.fail(x, asFailure(x.r.Context(), rerr))
		return
	}
	x.copyHead(resp, resp.ContentLength)
	x.wroteHeader = true
	x.w.WriteHeader(resp.Status)
	if n == 0 && rerr == nil {
		if flusher != nil {
			flusher.Flush()
		}
		n, rerr = body.Read(buf)
	}
	for {
		if n > 0 {
			if _, werr := x.w.Write(buf[:n]); werr != nil {
				x.rec.BytesOut = body.BytesRead()
				x.clientGone(werr)
				return
			}
			// Flush when the upstream has nothing more buffered, so a
			// slow stream reaches the client as it is produced.
			if rerr == nil && flusher != nil && body.Buffered() == 0 {
				flusher.Flush()
			}
		}
		if rerr != nil {
			x.rec.BytesOut = body.BytesRead()
			if rerr == errEOF {
				x.trailers(body)
				return
			}
			fe := asFailure(x.r.Context(), rerr)
			x.rec.SetFailure(fe)
			if fe.Kind == failure.ClientCanceled {
				x.rec.Status = failure.StatusClientClosed
			}
			x.rec.Aborted = true
			x.abort = true
			return
		}
		n, rerr = body.Read(buf)
	}
}

// trailers forwards a chunked body's trailer fields (net/http sends them
// after the body when the response is chunked).
func (x *exchange) trailers(body *upstream.Body) {
	hdr := x.w.Header()
	for _, f := range body.Trailer() {
		hdr.Add(http.TrailerPrefix+f.Name, f.Value)
	}
}

// clientGone records that writing to the client failed.
func (x *exchange) clientGone(err error) {
	x.rec.SetFailure(failure.Wrap(failure.ClientCanceled, "writing the response", err))
	x.rec.Status = failure.StatusClientClosed
}

// outbound builds the upstream request from the client's, in x.
func (x *exchange) outbound() *upstream.Request {
	r := x.r
	target := r.RequestURI
	if !strings.HasPrefix(target, "/") && target != "*" {
		target = r.URL.RequestURI() // absolute-form: send origin-form
	}
	req := &x.req
	*req = upstream.Request{
		Method:        r.Method,
		Target:        target,
		Host:          r.Host,
		Header:        r.Header,
		ContentLength: r.ContentLength,
		Attempt:       1,
	}
	if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		x.cbody = clientBody{r: r.Body, ctx: r.Context()}
		if x.maxBody > 0 {
			x.cbody.limit, x.cbody.left = x.maxBody, x.maxBody
		}
		req.Body = &x.cbody
	}
	req.Replayable = retry.Replayable(r.Method, r.Header, req.Body == nil)
	req.Extra = forwarding(append(x.extra[:0], upstream.Field{Name: "X-Request-Id", Value: x.id}), r, x.trusted)
	return req
}
