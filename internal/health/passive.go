package health

import (
	"context"
	"log/slog"
	"time"

	"candor/internal/failure"
	"candor/internal/upstream"
)

// outcome is what one attempt says about its target.
type outcome uint8

const (
	// neutral: says nothing about the target (the client's fault, the
	// route's contract); neither counts nor resets.
	neutral outcome = iota
	success
	failed
)

// classify sorts one attempt's outcome; see [Passive] for the rules.
func classify(fe *failure.Error, status int, count5xx bool) outcome {
	if fe == nil {
		if count5xx && status >= 500 {
			return failed
		}
		return success
	}
	switch fe.Kind {
	case failure.ClientCanceled, failure.ClientBodyInvalid,
		failure.ResponseTooLarge, failure.ContractViolation:
		return neutral
	}
	phase := fe.Kind.Row().Phase
	if fe.Kind == failure.KindUnknown {
		phase = fe.Phase
	}
	switch phase {
	case failure.PhaseDNS, failure.PhaseConnect, failure.PhaseTLS,
		failure.PhaseWrite, failure.PhaseReadHead, failure.PhaseReadBody:
		return failed
	}
	return neutral
}

// Report records the outcome of one real attempt on tg: fe is nil when the
// upstream answered validly, status is then its status. It is cheap enough
// for every request: a success costs a map read and an atomic load; the
// Checker's mutex is taken only when a target reaches ConsecutiveFailures.
// Reports for targets that are not the upstream's, or with passive health
// off, are ignored.
func (c *Checker) Report(tg *upstream.Target, fe *failure.Error, status int) {
	limit := c.opt.Passive.ConsecutiveFailures
	if limit <= 0 {
		return
	}
	t := c.byTarget[tg]
	if t == nil {
		return
	}
	switch classify(fe, status, c.opt.Passive.Count5xx) {
	case success:
		// Load first: most successes find zero and write nothing, which
		// keeps the counter's cache line shared between cores.
		if t.consecutive.Load() != 0 {
			t.consecutive.Store(0)
		}
	case failed:
		var code uint32
		if fe == nil {
			code = statusCode + uint32(status)
		} else {
			code = kindCode(fe.Kind)
		}
		if t.lastCause.Load() != code {
			t.lastCause.Store(code)
		}
		if n := t.consecutive.Add(1); n >= int64(limit) {
			c.eject(t, n, code)
		}
	}
}

// eject takes t out of rotation if the cap allows, after its n-th counted
// failure in a row.
func (c *Checker) eject(t *target, n int64, code uint32) {
	now := c.now()
	p := c.opt.Passive
	c.mu.Lock()
	if t.ejected && now.Before(t.until) {
		c.mu.Unlock()
		return
	}
	// Ejections that are over no longer count against the cap; the loop
	// logs and publishes them when nudged.
	ended := c.expireLocked(now)
	if len(ended) > 0 {
		defer c.logEnded(ended)
	}
	if !c.allowLocked() {
		c.mu.Unlock()
		if len(ended) > 0 {
			c.nudge()
		}
		if n == int64(p.ConsecutiveFailures) && c.log.Enabled(context.Background(), slog.LevelWarn) {
			c.log.LogAttrs(context.Background(), slog.LevelWarn, "health: ejection refused by max_ejected_percent",
				slog.String("upstream", c.name), slog.String("target", t.tg.Addr),
				slog.String("failure.kind", causeString(code)),
				slog.Int64("consecutive_failures", n),
				slog.Int("max_ejected_percent", p.MaxEjectedPercent))
		}
		return
	}
	// Decay: one step down per whole MaxEjection since the last ejection
	// ended.
	if t.mult > 0 && !t.until.IsZero() {
		if quiet := now.Sub(t.until); quiet >= p.MaxEjection {
			t.mult = max(t.mult-int(quiet/p.MaxEjection), 0)
		}
	}
	t.mult = min(t.mult+1, c.maxMult)
	d := min(p.BaseEjection*time.Duration(t.mult), p.MaxEjection)
	t.ejected = true
	t.until = now.Add(d)
	t.ejections++
	ejections := t.ejections
	t.consecutive.Store(0)
	c.mu.Unlock()
	c.nudge()
	c.log.LogAttrs(context.Background(), slog.LevelWarn, "health: target ejected",
		slog.String("upstream", c.name), slog.String("target", t.tg.Addr),
		slog.String("failure.kind", causeString(code)),
		slog.Int64("consecutive_failures", n),
		slog.Duration("ejection", d),
		slog.Int("ejections", ejections))
}

// expireLocked ends the ejections due by now and returns their targets. A
// target comes back with a clean failure count. c.mu must be held.
func (c *Checker) expireLocked(now time.Time) []*target {
	var ended []*target
	for _, t := range c.targets {
		if t.ejected && !now.Before(t.until) {
			t.ejected = false
			t.consecutive.Store(0)
			ended = append(ended, t)
		}
	}
	return ended
}

// logEnded logs the end of the ejections of targets.
func (c *Checker) logEnded(targets []*target) {
	for _, t := range targets {
		c.log.LogAttrs(context.Background(), slog.LevelInfo, "health: ejection ended",
			slog.String("upstream", c.name), slog.String("target", t.tg.Addr))
	}
}

// allowLocked reports whether one more target may be ejected now. c.mu
// must be held.
func (c *Checker) allowLocked() bool {
	total := len(c.targets)
	pct := c.opt.Passive.MaxEjectedPercent
	if total == 1 {
		return pct >= 100
	}
	ejected := 0
	for _, t := range c.targets {
		if t.ejected {
			ejected++
		}
	}
	if ejected == 0 {
		return total >= 2
	}
	return (ejected+1)*100 <= pct*total
}
