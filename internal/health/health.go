// Package health tracks the health of one upstream's targets and publishes
// the set of targets the balancer may use.
//
// Two signals decide whether a target is usable:
//
//   - Active checks ([Active]): every Interval each target is probed with
//     GET Path through the upstream's own [upstream.Transport], so a failed
//     probe is classified by the same cause table as real traffic. Unhealthy
//     failed probes in a row mark the target failing; Healthy passing probes
//     in a row bring it back.
//   - Passive outlier ejection ([Passive]): the proxy reports the outcome of
//     every real attempt with [Checker.Report]. ConsecutiveFailures upstream
//     faults in a row eject the target for a while; see [Passive] for what
//     counts, how long an ejection lasts and how many targets may be ejected
//     at once.
//
// A target is usable when it is neither failing active checks nor ejected.
// Targets start usable.
//
// There is no goroutine or timer per failure (STYLE.md §6): Report only
// updates atomic counters, and takes the Checker's mutex only when a target
// is ejected. One goroutine per upstream owns the probe interval, a single
// [time.Timer] armed for the earliest end of an ejection, and every call of
// the onChange callback. Probes run concurrently on one long-lived worker
// goroutine per target, so a target never has more than one probe in
// flight.
package health

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"candor/internal/failure"
	"candor/internal/upstream"
)

// Options configure a [Checker].
type Options struct {
	// Active configures active probes; nil turns them off.
	Active *Active
	// Passive configures outlier ejection from real traffic;
	// ConsecutiveFailures 0 turns it off.
	Passive Passive
	// Log receives one record per state change (warn when a target goes
	// out, info when it comes back). Nil discards.
	Log *slog.Logger
	// Now is the clock of ejections. Nil means [time.Now]. The probe
	// interval always runs on real time.
	Now func() time.Time
	// Prev, when set, is the checker of the upstream this one replaces on
	// a reload: the targets they share keep their health state.
	Prev *Checker
}

// Active configures active health checks: GET Path on every target, every
// Interval. Zero fields take the defaults of config.ActiveHealth.
type Active struct {
	// Path is the request-target probed. Default: "/".
	Path string
	// Host is the Host header of probes. Default: the target's host:port.
	Host string
	// Interval between the starts of two probes of a target. A probe still
	// running when the next is due is not doubled: that target skips a
	// round. Default: 5s.
	Interval time.Duration
	// Timeout bounds one probe, connect to end of body. Default: 2s.
	Timeout time.Duration
	// ExpectLo and ExpectHi bound the statuses that pass, inclusive.
	// Default: 200-399; ExpectHi 0 with ExpectLo set means ExpectLo alone.
	ExpectLo, ExpectHi int
	// Healthy is the number of passing probes in a row that bring a
	// failing target back. Default: 2.
	Healthy int
	// Unhealthy is the number of failing probes in a row that take a
	// target out. Default: 3.
	Unhealthy int
}

// Passive configures outlier ejection from the outcomes of real attempts.
//
// What counts as a failure: a [failure.Error] whose Kind belongs to an
// upstream phase (dns, connect, tls, write, read_head, read_body, by the
// Kind's row of the cause table; for [failure.KindUnknown], which has no
// phase of its own, the phase recorded in the error). Not counted, and not
// resetting the count either: the client's kinds ([failure.ClientCanceled],
// [failure.ClientBodyInvalid]) and the route's contract
// ([failure.ResponseTooLarge], [failure.ContractViolation]): a strict route's
// buffer limit or schema says nothing about the target's health, and a
// target that is fine for every other route must not be ejected for one.
// An upstream's own valid response is a success, which resets the count,
// except that with Count5xx a status of 500 or more is a failure.
//
// Ejection length: the n-th ejection in a run lasts min(BaseEjection × n,
// MaxEjection). The multiplier n stops growing once BaseEjection × n
// reaches MaxEjection, and it decays: at each new ejection, n first
// decreases by one for every whole MaxEjection that has passed since the
// previous ejection ended (never below zero). A target that fails again
// soon is ejected for longer; one that stayed well for MaxEjection × k
// starts k steps lower.
//
// Cap: an ejection is refused when it would leave more than
// MaxEjectedPercent of the upstream's targets ejected at once, except that
// with two or more targets the first ejection is always allowed; a lone
// target is ejected only when MaxEjectedPercent is 100 (ejecting it leaves
// nothing to send to, which then answers 503 rather than trying the target).
// A refused target keeps its failure count, so it is ejected by its next
// failure once the cap allows. A target whose ejection ends comes back
// with a failure count of zero.
type Passive struct {
	// ConsecutiveFailures ejects a target after this many counted failures
	// in a row. 0 turns passive health off.
	ConsecutiveFailures int
	// BaseEjection is the first ejection's length. Default: 10s.
	BaseEjection time.Duration
	// MaxEjection caps an ejection's length and is the decay period of the
	// multiplier. Default: 5m; never less than BaseEjection.
	MaxEjection time.Duration
	// MaxEjectedPercent caps the share of targets ejected at once, 0 to
	// 100 (values outside are clamped).
	MaxEjectedPercent int
	// Count5xx counts an upstream's own statuses of 500 and above as
	// failures.
	Count5xx bool
}

// Defaults, as documented in config.ActiveHealth and config.PassiveHealth.
const (
	defaultInterval     = 5 * time.Second
	defaultTimeout      = 2 * time.Second
	defaultExpectLo     = 200
	defaultExpectHi     = 399
	defaultHealthy      = 2
	defaultUnhealthy    = 3
	defaultBaseEjection = 10 * time.Second
	defaultMaxEjection  = 5 * time.Minute

	// maxProbeBody is how much of a probe's response body is read before
	// the body is closed.
	maxProbeBody = 64 << 10
	// userAgent is sent with every probe.
	userAgent = "candor-health-check"
)

// TargetState is a snapshot of one target's health for the admin API.
type TargetState struct {
	// Target is the target's host:port.
	Target string
	// Healthy reports that the target is usable: not failing active
	// checks and not ejected.
	Healthy bool
	// ActiveFailing reports that active checks took the target out.
	ActiveFailing bool
	// Ejected reports a passive ejection in force; EjectedUntil is its end
	// (zero when not ejected).
	Ejected      bool
	EjectedUntil time.Time
	// Ejections counts the target's ejections since the Checker was made.
	Ejections int
	// LastCause is the cause id of the last counted failure, passive or
	// active ("status 503" for a status), or "" for none.
	LastCause string
	// ConsecutiveFailures counts counted failures of real traffic in a row.
	ConsecutiveFailures int
	// ProbeFailures counts failed probes in a row.
	ProbeFailures int
	// InFlight is the number of requests in flight to the target.
	InFlight int64
}

// Checker tracks the health of one upstream's targets and publishes the
// usable set.
//
// Report and States may be called from any goroutine at any time. onChange
// is called from one goroutine at a time: once by Start, then only from the
// Checker's goroutine, whenever the usable set changes, with the usable
// targets in configuration order in a new slice the callee may keep. It
// must not block for long and must not call Start or Close. State changes
// made before Start are published by Start; nothing is published after
// Close.
type Checker struct {
	opt      Options
	name     string
	tr       *upstream.Transport
	onChange func(usable []*upstream.Target)
	log      *slog.Logger
	now      func() time.Time
	maxMult  int // the multiplier's ceiling: ceil(MaxEjection / BaseEjection)

	targets  []*target
	byTarget map[*upstream.Target]*target // read-only after New

	// mu guards the fields of target marked "mu", and started and closed.
	mu      sync.Mutex
	started bool
	closed  bool

	wake    chan struct{}    // capacity 1: the loop should re-check
	results chan probeResult // capacity len(targets)
	stop    chan struct{}
	ctx     context.Context // canceled by Close; parent of probes
	cancel  context.CancelFunc
	once    sync.Once
	wg      sync.WaitGroup

	// Owned by the goroutine that publishes (Start, then the loop).
	published []*upstream.Target
	scratch   []*upstream.Target
}

// target is the health state of one target.
type target struct {
	tg *upstream.Target

	// Hot path: updated by Report without a lock.
	consecutive atomic.Int64  // counted failures in a row
	lastCause   atomic.Uint32 // encoded by causeCode

	// Guarded by Checker.mu.
	ejected       bool
	until         time.Time // end of the current or last ejection
	mult          int       // ejection multiplier n
	ejections     int
	activeFailing bool
	probeFails    int
	probePasses   int

	// Active probing.
	req   *upstream.Request
	probe chan struct{} // capacity 1: the worker's orders
	busy  bool          // owned by the loop: a probe is in flight
}

// New returns a Checker for the targets of tr. Call Start to begin
// probing and publishing, and Close to stop.
func New(opt Options, tr *upstream.Transport, onChange func(usable []*upstream.Target)) *Checker {
	c := &Checker{
		name:     tr.Name(),
		tr:       tr,
		onChange: onChange,
		log:      opt.Log,
		now:      opt.Now,
		byTarget: make(map[*upstream.Target]*target),
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.onChange == nil {
		c.onChange = func([]*upstream.Target) {}
	}
	c.opt = withDefaults(opt)
	p := c.opt.Passive
	c.maxMult = int((p.MaxEjection + p.BaseEjection - 1) / p.BaseEjection)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	for _, tg := range tr.Targets() {
		t := &target{tg: tg}
		if a := c.opt.Active; a != nil {
			host := a.Host
			if host == "" {
				host = tg.Addr
			}
			t.req = &upstream.Request{
				Method:     http.MethodGet,
				Target:     a.Path,
				Host:       host,
				Header:     http.Header{"User-Agent": {userAgent}},
				Replayable: true,
				Attempt:    1,
			}
			t.probe = make(chan struct{}, 1)
		}
		c.targets = append(c.targets, t)
		c.byTarget[tg] = t
	}
	c.results = make(chan probeResult, len(c.targets))
	if p := opt.Prev; p != nil {
		c.inherit(p)
	}
	return c
}

// inherit copies the health state of the targets c shares with prev (a
// reload that rebuilt the upstream but kept these targets): an ejected
// target stays ejected until its time, a failing one stays out, and
// counts go on.
func (c *Checker) inherit(prev *Checker) {
	prev.mu.Lock()
	defer prev.mu.Unlock()
	for _, t := range c.targets {
		old := prev.byTarget[t.tg]
		if old == nil {
			continue
		}
		t.consecutive.Store(old.consecutive.Load())
		t.lastCause.Store(old.lastCause.Load())
		t.ejected, t.until, t.mult, t.ejections = old.ejected, old.until, old.mult, old.ejections
		t.activeFailing, t.probeFails, t.probePasses = old.activeFailing, old.probeFails, old.probePasses
	}
}

func withDefaults(opt Options) Options {
	p := &opt.Passive
	if p.BaseEjection <= 0 {
		p.BaseEjection = defaultBaseEjection
	}
	if p.MaxEjection <= 0 {
		p.MaxEjection = defaultMaxEjection
	}
	p.MaxEjection = max(p.MaxEjection, p.BaseEjection)
	p.MaxEjectedPercent = min(max(p.MaxEjectedPercent, 0), 100)
	if opt.Active != nil {
		a := *opt.Active
		if a.Path == "" {
			a.Path = "/"
		}
		if a.Interval <= 0 {
			a.Interval = defaultInterval
		}
		if a.Timeout <= 0 {
			a.Timeout = defaultTimeout
		}
		switch {
		case a.ExpectLo == 0 && a.ExpectHi == 0:
			a.ExpectLo, a.ExpectHi = defaultExpectLo, defaultExpectHi
		case a.ExpectHi == 0:
			a.ExpectHi = a.ExpectLo
		}
		if a.Healthy <= 0 {
			a.Healthy = defaultHealthy
		}
		if a.Unhealthy <= 0 {
			a.Unhealthy = defaultUnhealthy
		}
		opt.Active = &a
	}
	return opt
}

// Start publishes the usable set once, on the calling goroutine, then
// starts the Checker's goroutine (and, with active checks, one probe worker
// per target; the first round of probes starts at once). Later calls, and
// calls after Close, do nothing.
func (c *Checker) Start() {
	c.mu.Lock()
	if c.started || c.closed {
		c.mu.Unlock()
		return
	}
	c.started = true
	c.mu.Unlock()

	c.tick(c.now(), true)

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if c.opt.Active != nil {
		for _, t := range c.targets {
			c.wg.Add(1)
			go c.worker(t)
		}
	}
	c.wg.Add(1)
	go c.run()
}

// Close stops probing and publishing, cancels probes in flight and waits
// for the Checker's goroutines. It may be called more than once.
func (c *Checker) Close() {
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		close(c.stop)
		c.cancel()
	})
	c.wg.Wait()
}

// run is the Checker's goroutine: it starts probe rounds, applies their
// results, ends ejections on time and publishes the usable set.
func (c *Checker) run() {
	defer c.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var interval <-chan time.Time
	if c.opt.Active != nil {
		tk := time.NewTicker(c.opt.Active.Interval)
		defer tk.Stop()
		interval = tk.C
		c.probeRound()
	}
	for {
		select {
		case <-c.stop:
			return
		case <-c.wake:
		case <-timer.C:
		case <-interval:
			c.probeRound()
		case r := <-c.results:
			c.applyProbe(r)
		}
		now := c.now()
		if next := c.tick(now, false); next.IsZero() {
			timer.Stop()
		} else {
			timer.Reset(max(next.Sub(now), 0))
		}
	}
}

// nudge asks the loop to re-check expiries and publish, without blocking.
func (c *Checker) nudge() {
	select {
	case c.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// tick ends the ejections due by now, publishes the usable set when it
// changed (or when force is set) and returns the earliest end of an
// ejection still in force, or zero. It runs on the publishing goroutine.
func (c *Checker) tick(now time.Time, force bool) time.Time {
	var next time.Time
	c.mu.Lock()
	ended := c.expireLocked(now)
	usable := c.scratch[:0]
	for _, t := range c.targets {
		if t.ejected && (next.IsZero() || t.until.Before(next)) {
			next = t.until
		}
		if !t.ejected && !t.activeFailing {
			usable = append(usable, t.tg)
		}
	}
	c.mu.Unlock()
	c.scratch = usable
	c.logEnded(ended)
	if force || !sameTargets(usable, c.published) {
		c.published = append([]*upstream.Target(nil), usable...)
		c.onChange(append([]*upstream.Target(nil), usable...))
	}
	return next
}

func sameTargets(a, b []*upstream.Target) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// States returns a snapshot of every target's health, in configuration
// order.
func (c *Checker) States() []TargetState {
	now := c.now()
	out := make([]TargetState, len(c.targets))
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, t := range c.targets {
		ejected := t.ejected && now.Before(t.until)
		s := TargetState{
			Target:              t.tg.Addr,
			Healthy:             !ejected && !t.activeFailing,
			ActiveFailing:       t.activeFailing,
			Ejected:             ejected,
			Ejections:           t.ejections,
			LastCause:           causeString(t.lastCause.Load()),
			ConsecutiveFailures: int(t.consecutive.Load()),
			ProbeFailures:       t.probeFails,
			InFlight:            t.tg.InFlight(),
		}
		if ejected {
			s.EjectedUntil = t.until
		}
		out[i] = s
	}
	return out
}

// Cause codes for target.lastCause: 0 is none, a Kind k is k+1, a status s
// is statusCode+s.
const statusCode = 1000

func kindCode(k failure.Kind) uint32 { return uint32(k) + 1 }

func causeString(code uint32) string {
	switch {
	case code == 0:
		return ""
	case code > statusCode:
		return statusString(int(code - statusCode))
	}
	return failure.Kind(code - 1).String()
}

func statusString(status int) string { return "status " + strconv.Itoa(status) }
