package proxy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"slices"
	"time"

	"candor/internal/failure"
	"candor/internal/retry"
	"candor/internal/telemetry"
	"candor/internal/upstream"
)

// heldLimit bounds an upstream response held while a retry-on-status
// attempt is made; a larger one is passed through instead of retried.
const heldLimit = 64 << 10

// held is an upstream's valid response kept while another attempt is made
// (retry on status), so that the client gets it if the retries fail.
type held struct {
	resp *upstream.Response
	tg   *upstream.Target
	body []byte
}

// attempts runs the request's attempts: pick a target, send, and on a
// failure that is safe to retry (retry.Safe), within the route's attempt
// limit, overall timeout and retry budget, back off and try another target.
// It returns the response to pass on and its target (whose in-flight count
// the caller releases), or nil after answering the client itself.
//
// When retries run out, the client gets the last real outcome: an
// upstream's valid response held from a retry-on-status attempt if there
// was one, otherwise the last failure.
func (h *Handler) attempts(x *exchange, rt *Route, req *upstream.Request) (*upstream.Response, *upstream.Target) {
	r := x.r
	ctx := r.Context()
	if rt.Retry.Budget != nil {
		rt.Retry.Budget.Request()
	}
	req.HeaderTimeout = rt.Retry.PerTry
	if rt.Retry.Timeout > 0 {
		req.Deadline = time.Now().Add(rt.Retry.Timeout)
	}
	key := ""
	if rt.Key != nil {
		key = rt.Key(r)
	}

	var last *failure.Error
	var hold *held
	tried := make([]*upstream.Target, 0, 2)
	for attempt := 1; ; attempt++ {
		tg := pickUntried(rt.Picker, key, tried)
		if tg == nil {
			if attempt == 1 {
				h.fail(x, h.selectError(noTargetKind(rt), rt))
				return nil, nil
			}
			break
		}
		tried = append(tried, tg)
		req.Attempt = attempt
		if attempt > 1 && req.GetBody != nil {
			req.Body = req.GetBody()
		}
		x.rec.Attempts = attempt
		sp := x.span.StartAttempt(rt.Upstream.Name(), tg.Addr, attempt)
		traceFields(req, sp)
		tg.Acquire()
		x.inflight = tg // released by the panic handler if it gets that far
		resp, err := rt.Upstream.RoundTrip(ctx, tg, req)
		if err != nil {
			x.inflight = nil
			tg.Release()
			fe := asFailure(ctx, err)
			x.rec.Tries = append(x.rec.Tries, telemetry.Try{Attempt: attempt, Target: tg.Addr, Cause: fe.Kind.String()})
			sp.End(0, fe)
			// The client's own failure (its body broke, stalled, grew
			// past max_body, or it went away) says nothing about the
			// target, and is never retried (its cause's row says so).
			if rt.Health != nil && fe.Kind.Row().Phase != failure.PhaseClient {
				rt.Health.Report(tg, fe, 0)
			}
			last = fe
			if h.again(x, rt, req, attempt, retry.Safe(fe, req.Replayable)) {
				continue
			}
			break
		}
		// Passive health hears of a passed-on response once its body has
		// ended (report): a body fault must count against the target.
		x.rec.Tries = append(x.rec.Tries, telemetry.Try{Attempt: attempt, Target: tg.Addr, Status: resp.Status})
		if slices.Contains(rt.Retry.OnStatus, resp.Status) && attempt < rt.Retry.Attempts && req.Replayable && holdable(resp) {
			data, err := readLimited(resp.Body, heldLimit, nil, resp.ContentLength)
			resp.Body.Close()
			rt.report(tg, resp)
			x.inflight = nil
			if err != nil {
				// The held response broke: a failed attempt like any
				// other.
				tg.Release()
				fe := asFailure(ctx, err)
				x.rec.Tries[len(x.rec.Tries)-1].Cause = fe.Kind.String()
				sp.End(resp.Status, fe)
				last = fe
				if h.again(x, rt, req, attempt, retry.Safe(fe, req.Replayable)) {
					continue
				}
				break
			}
			sp.End(resp.Status, nil)
			if hold != nil {
				hold.tg.Release()
			}
			hold, last = &held{resp: resp, tg: tg, body: data}, nil
			if h.again(x, rt, req, attempt, true) {
				continue
			}
			break
		}
		// The attempt's span ends at the response head; the body's fate
		// is the request span's.
		sp.End(resp.Status, nil)
		if hold != nil {
			hold.tg.Release()
		}
		x.inflight = nil // the caller releases it
		return resp, tg
	}
	if hold != nil && (last == nil || last.Kind != failure.ClientCanceled) {
		// The upstream's own answer beats a gateway error.
		defer hold.tg.Release()
		x.rec.Target = hold.tg.Addr
		h.writeHeld(x, hold)
		return nil, nil
	}
	h.fail(x, last)
	return nil, nil
}

// again decides whether to make another attempt after attempt failed (or
// was held), and waits the back-off. It reports false when the attempt
// limit, the retry budget, the overall deadline or the client stops it.
func (h *Handler) again(x *exchange, rt *Route, req *upstream.Request, attempt int, safe bool) bool {
	if !safe || attempt >= rt.Retry.Attempts || rt.Retry.Budget == nil {
		return false
	}
	if !rt.Retry.Budget.Allow() {
		x.rec.BudgetExhausted = true
		return false
	}
	wait := retry.Backoff(attempt+1, rt.Retry.Backoff, rt.Retry.MaxBackoff)
	if !req.Deadline.IsZero() && time.Now().Add(wait).After(req.Deadline) {
		return false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-x.r.Context().Done():
		return false
	}
}

// traceFields sets the attempt's W3C trace context (traceparent and, when
// the trace has one, tracestate) among the fields candor sends upstream,
// replacing a previous attempt's. a is nil when the request is not traced.
func traceFields(req *upstream.Request, a *telemetry.Attempt) {
	if a == nil {
		return
	}
	tp, ts := a.Fields()
	req.Extra = setField(req.Extra, "Traceparent", tp)
	if ts != "" {
		req.Extra = setField(req.Extra, "Tracestate", ts)
	}
}

// setField sets the field name (canonical) in fs to value, appending it
// when absent.
func setField(fs []upstream.Field, name, value string) []upstream.Field {
	for i := range fs {
		if fs[i].Name == name {
			fs[i].Value = value
			return fs
		}
	}
	return append(fs, upstream.Field{Name: name, Value: value})
}

// pickUntried picks a target, preferring one not tried yet for this
// request: a retry goes to another target when there is one.
//
// A key (consistent hashing) maps to the same target on every pick, so
// once its target was tried the retry is balanced without the key.
func pickUntried(p Picker, key string, tried []*upstream.Target) *upstream.Target {
	if len(tried) > 0 {
		key = ""
	}
	var tg *upstream.Target
	for range 4 {
		tg = p.Pick(key)
		if tg == nil || !slices.Contains(tried, tg) {
			return tg
		}
	}
	return tg
}

// report tells passive health the outcome of an attempt whose response
// was read: a body fault, or success with the upstream's status.
func (rt *Route) report(tg *upstream.Target, resp *upstream.Response) {
	if rt.Health == nil {
		return
	}
	fe, _ := errors.AsType[*failure.Error](resp.Body.Err())
	rt.Health.Report(tg, fe, resp.Status)
}

// usableCounter is implemented by pickers that can tell how many targets
// are usable, so that "all usable targets are at their limit" (overload)
// is told apart from "no usable target".
type usableCounter interface{ Usable() int }

// noTargetKind explains why the picker found no target.
func noTargetKind(rt *Route) failure.Kind {
	if u, ok := rt.Picker.(usableCounter); ok && u.Usable() > 0 {
		return failure.Overloaded
	}
	return failure.NoHealthyUpstream
}

// selectError is a failure of target selection, attributed to the route's
// upstream.
func (h *Handler) selectError(k failure.Kind, rt *Route) *failure.Error {
	fe := failure.New(k, "")
	fe.Upstream = rt.Upstream.Name()
	return fe
}

// bufferBody reads a replayable request's body (idempotent method or
// Idempotency-Key) into memory, up to the route's BodyBuffer, so that a
// retry can send it again. A larger body is streamed and its request is
// not replayable once sent.
func bufferBody(r *http.Request, req *upstream.Request, rp Retry) *failure.Error {
	if req.Body == nil || rp.Attempts < 2 || rp.BodyBuffer <= 0 || !retry.Replayable(r.Method, r.Header, true) {
		return nil
	}
	if req.ContentLength > rp.BodyBuffer {
		return nil
	}
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(req.Body, rp.BodyBuffer+1))
	if err != nil {
		return clientBodyFailure(r.Context(), err)
	}
	if n > rp.BodyBuffer {
		// Too large after all (chunked): stream the rest behind what was
		// read; not replayable.
		req.Body = io.MultiReader(bytes.NewReader(buf.Bytes()), req.Body)
		return nil
	}
	if req.ContentLength >= 0 && n != req.ContentLength {
		return failure.New(failure.ClientBodyInvalid, "request body shorter than its Content-Length")
	}
	data := buf.Bytes()
	req.ContentLength = int64(len(data))
	req.GetBody = func() io.Reader { return bytes.NewReader(data) }
	req.Body = req.GetBody()
	req.Replayable = true
	return nil
}

// holdable reports whether resp is small enough, by its framing, to be
// held in memory while another attempt is made; a larger one is passed
// through rather than retried.
func holdable(resp *upstream.Response) bool {
	return resp.Mode == upstream.BodyNone || resp.Mode == upstream.BodyLength && resp.ContentLength <= heldLimit
}

// writeHeld sends a held response.
func (h *Handler) writeHeld(x *exchange, hd *held) {
	length := hd.resp.ContentLength
	if hd.resp.Mode != upstream.BodyNone {
		length = int64(len(hd.body))
	}
	x.copyHead(hd.resp, length)
	x.wroteHeader = true
	x.w.WriteHeader(hd.resp.Status)
	if _, err := x.w.Write(hd.body); err != nil {
		x.clientGone(err)
		return
	}
	x.rec.BytesOut = int64(len(hd.body))
}
