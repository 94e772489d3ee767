package health

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"candor/internal/failure"
)

// probeResult is the outcome of one probe of t.
type probeResult struct {
	t *target
	// canceled: the Checker was closed during the probe; no verdict.
	canceled bool
	pass     bool
	// kind is the cause of a failed probe, when the transport failed or
	// the body broke; status is the response's status (0 if none).
	kind   failure.Kind
	failed bool // kind is set
	status int
}

// cause returns the lastCause code of a failed probe.
func (r probeResult) cause() uint32 {
	if r.failed {
		return kindCode(r.kind)
	}
	return statusCode + uint32(r.status)
}

// probeRound orders one probe of every target that has none in flight. It
// runs on the loop.
func (c *Checker) probeRound() {
	for _, t := range c.targets {
		if t.busy {
			continue // still probing: never two probes of a target at once
		}
		t.busy = true
		t.probe <- struct{}{} // never blocks: capacity 1 and not busy
	}
}

// worker probes t whenever the loop says so, until Close.
func (c *Checker) worker(t *target) {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case <-t.probe:
		}
		r := c.probe(t)
		select {
		case c.results <- r:
		case <-c.stop:
			return
		}
	}
}

// probe sends one GET to t through the upstream's transport and judges the
// answer: a status in [ExpectLo, ExpectHi] whose body (at most 64 KiB of
// it, the rest is not read) arrives intact passes.
func (c *Checker) probe(t *target) probeResult {
	a := c.opt.Active
	ctx, cancel := context.WithTimeout(c.ctx, a.Timeout)
	defer cancel()
	r := probeResult{t: t}
	resp, err := c.tr.RoundTrip(ctx, t.tg, t.req)
	if err != nil {
		return c.probeFailed(ctx, r, err)
	}
	r.status = resp.Status
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, maxProbeBody))
	resp.Body.Close()
	switch {
	case r.status < a.ExpectLo || r.status > a.ExpectHi:
		if c.ctx.Err() != nil {
			r.canceled = true
		}
		return r
	case err != nil:
		return c.probeFailed(ctx, r, err)
	}
	r.pass = true
	return r
}

// probeFailed records the cause of a failed probe. The transport reports
// the end of the probe's own context as the client's ([failure.ClientCanceled]):
// for a probe that is the upstream being too slow, a timeout of the phase
// it was in.
func (c *Checker) probeFailed(ctx context.Context, r probeResult, err error) probeResult {
	if c.ctx.Err() != nil {
		r.canceled = true
		return r
	}
	r.failed = true
	r.kind = failure.KindUnknown
	var phase failure.Phase
	if fe, ok := errors.AsType[*failure.Error](err); ok {
		r.kind, phase = fe.Kind, fe.Phase
	}
	if r.kind == failure.ClientCanceled && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		switch phase {
		case failure.PhaseDNS, failure.PhaseConnect, failure.PhaseTLS:
			r.kind = failure.ConnectTimeout
		case failure.PhaseReadBody:
			r.kind = failure.BodyTimeout
		default:
			r.kind = failure.ResponseTimeout
		}
	}
	return r
}

// applyProbe moves t's active state by one probe result and logs a change.
// It runs on the loop, which publishes afterwards.
func (c *Checker) applyProbe(r probeResult) {
	t := r.t
	t.busy = false
	if r.canceled {
		return
	}
	a := c.opt.Active
	var down, up bool
	c.mu.Lock()
	if r.pass {
		t.probeFails = 0
		t.probePasses++
		if t.activeFailing && t.probePasses >= a.Healthy {
			t.activeFailing = false
			up = true
		}
	} else {
		t.probePasses = 0
		t.probeFails++
		t.lastCause.Store(r.cause())
		if !t.activeFailing && t.probeFails >= a.Unhealthy {
			t.activeFailing = true
			down = true
		}
	}
	fails, passes := t.probeFails, t.probePasses
	c.mu.Unlock()
	switch {
	case down:
		attrs := []slog.Attr{
			slog.String("upstream", c.name), slog.String("target", t.tg.Addr),
			slog.Int("consecutive_failures", fails),
		}
		if r.failed {
			attrs = append(attrs, slog.String("failure.kind", r.kind.String()))
		} else {
			attrs = append(attrs, slog.Int("status", r.status))
		}
		c.log.LogAttrs(context.Background(), slog.LevelWarn, "health: target failing active checks", attrs...)
	case up:
		c.log.LogAttrs(context.Background(), slog.LevelInfo, "health: target passing active checks again",
			slog.String("upstream", c.name), slog.String("target", t.tg.Addr),
			slog.Int("consecutive_passes", passes))
	}
}
