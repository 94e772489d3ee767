// Package reload builds a Generation (routes, upstream transports and
// pickers) from a validated configuration. A Generation is immutable once
// built; the proxy handler swaps whole generations, so a configuration is
// either entirely in force or not at all.
package reload

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"candor/internal/balancer"
	"candor/internal/circuit"
	"candor/internal/config"
	"candor/internal/health"
	"candor/internal/proxy"
	"candor/internal/retry"
	"candor/internal/router"
	"candor/internal/upstream"

	"go.yaml.in/yaml/v3"
)

// maxHeadFields bounds the number of response header fields. It is not
// configurable: 256 fields is past any legitimate response, and the byte
// limit (response_head_limit) is the knob that matters.
const maxHeadFields = 256

// Generation is everything built from one configuration.
type Generation struct {
	Config    *config.Config
	Table     *proxy.Table
	Upstreams map[string]*Upstream
}

// Upstream is one upstream's running machinery: its transport (targets and
// pools), balancer, health checker and concurrency limiter. An upstream
// whose configuration did not change is carried over from one generation
// to the next, with its pooled connections and health state.
type Upstream struct {
	Name      string
	Transport *upstream.Transport
	Balancer  *balancer.Balancer
	Health    *health.Checker
	Limiter   *circuit.Limiter
	// Key extracts a request's consistent-hash key; nil for other
	// policies.
	Key func(*http.Request) string

	// conf is the canonical form of the configuration the upstream was
	// built from (drain flags aside), to tell whether a reload changed it.
	conf string
	// drained marks targets (by index) that take no new requests.
	drained []atomic.Bool

	mu     sync.Mutex
	usable []*upstream.Target // the last usable set published by health
}

// setUsable records the usable set published by the health checker and
// passes it, less drained targets, to the balancer.
func (up *Upstream) setUsable(usable []*upstream.Target) {
	up.mu.Lock()
	defer up.mu.Unlock()
	up.usable = usable
	up.publish()
}

// SetDrain drains (or undrains) target i.
func (up *Upstream) SetDrain(i int, on bool) {
	up.mu.Lock()
	defer up.mu.Unlock()
	up.drained[i].Store(on)
	up.publish()
}

// Drained reports whether target i is drained.
func (up *Upstream) Drained(i int) bool { return up.drained[i].Load() }

// publish updates the balancer; up.mu is held.
func (up *Upstream) publish() {
	all := up.Transport.Targets()
	out := make([]*upstream.Target, 0, len(up.usable))
	for _, tg := range up.usable {
		if i := slices.Index(all, tg); i >= 0 && !up.drained[i].Load() {
			out = append(out, tg)
		}
	}
	up.Balancer.Update(out)
}

// canonical returns the form of u compared between generations: every key
// but the targets' drain flags (applied to a carried-over upstream in
// place), plus the content of the CA file, whose change must rebuild the
// TLS configuration.
func canonical(u *config.Upstream) string {
	c := *u
	c.Targets = slices.Clone(u.Targets)
	for i := range c.Targets {
		c.Targets[i].Drain = false
	}
	b, err := yaml.Marshal(&c)
	if err != nil {
		return "" // never equal to anything: rebuild
	}
	if c.TLS != nil && c.TLS.CAFile != "" {
		pem, _ := os.ReadFile(c.TLS.CAFile)
		sum := sha256.Sum256(pem)
		b = append(b, sum[:]...)
	}
	return string(b)
}

// Build builds a Generation from cfg, which must have been validated by
// package config. On error nothing is left running.
//
// Upstreams of prev (which may be nil) whose configuration is unchanged are
// carried over, with their connections and health state, rather than
// rebuilt; a failed Build leaves prev untouched.
func Build(cfg *config.Config, log *slog.Logger, prev *Generation) (*Generation, error) {
	g := &Generation{Config: cfg, Upstreams: make(map[string]*Upstream, len(cfg.Upstreams))}
	for name, u := range cfg.Upstreams {
		conf := canonical(u)
		if old := prev.upstream(name); old != nil && conf != "" && old.conf == conf {
			// Shared with the running generation: its drain flags are
			// set by the State only once the reload can no longer fail.
			g.Upstreams[name] = old
			continue
		}
		// A changed upstream is rebuilt, but its unchanged targets keep
		// their pooled connections and health state.
		old := prev.upstream(name)
		tr, err := buildTransport(name, u, old)
		if err != nil {
			g.closeExcept(prev)
			return nil, fmt.Errorf("%s:%d: upstreams.%s: %w", cfg.File, u.Line, name, err)
		}
		up := buildUpstream(name, u, tr, log, old)
		up.conf = conf
		g.Upstreams[name] = up
	}
	rules := make([]router.Rule, len(cfg.Routes))
	routes := make([]*proxy.Route, len(cfg.Routes))
	for i, rc := range cfg.Routes {
		up := g.Upstreams[rc.Upstream]
		if up == nil {
			g.closeExcept(prev)
			return nil, fmt.Errorf("%s:%d: routes[%d].upstream: no upstream %q", cfg.File, rc.Line, i, rc.Upstream)
		}
		rules[i] = router.Rule{Host: rc.Match.Host, PathPrefix: rc.Match.PathPrefix}
		rt := &proxy.Route{
			Name: rc.Name, Upstream: up.Transport, Picker: up.Balancer,
			Limiter: up.Limiter, Health: up.Health, Key: up.Key,
			Retry:   buildRetry(rc.Retry, prev.budget(rc.Name, rc.Retry)),
			MaxBody: int64(rc.MaxBody),
		}
		rt.Maintenance.Store(rc.Maintenance)
		if rc.Strict != nil {
			rt.Strict = &proxy.Strict{Buffer: int64(rc.Strict.Buffer), JSON: rc.Strict.Validate == config.ValidateJSON}
		}
		if u := rc.Upgrade; u != nil {
			rt.Upgrade = &proxy.Upgrade{Protocols: u.Protocols, Idle: u.Idle.Std()}
		}
		routes[i] = rt
	}
	g.Table = &proxy.Table{Router: router.New(rules), Routes: routes}
	for _, s := range cfg.TrustedProxies {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			g.closeExcept(prev)
			return nil, fmt.Errorf("%s: trusted_proxies: %w", cfg.File, err)
		}
		g.Table.TrustedProxies = append(g.Table.TrustedProxies, p)
	}
	return g, nil
}

// buildUpstream wires a transport to its balancer, health checker and
// limiter: health publishes the usable targets to the balancer.
func buildUpstream(name string, u *config.Upstream, tr *upstream.Transport, log *slog.Logger, old *Upstream) *Upstream {
	up := &Upstream{Name: name, Transport: tr, drained: make([]atomic.Bool, len(u.Targets))}
	for i, t := range u.Targets {
		up.drained[i].Store(t.Drain)
	}
	up.Balancer = balancer.New(balancer.Options{
		Policy:              policies[u.Balance.Policy],
		HashLoadFactor:      u.Balance.HashLoadFactor,
		TargetMaxConcurrent: int64(u.Limits.TargetMaxConcurrent),
	}, tr.Targets())
	hopt := health.Options{
		Passive: health.Passive{
			ConsecutiveFailures: u.Health.Passive.ConsecutiveFailures,
			BaseEjection:        u.Health.Passive.BaseEjection.Std(),
			MaxEjection:         u.Health.Passive.MaxEjection.Std(),
			MaxEjectedPercent:   u.Health.Passive.MaxEjectedPercent,
			Count5xx:            u.Health.Passive.Count5xx,
		},
		Log: log.With("upstream", name),
	}
	if a := u.Health.Active; a != nil {
		lo, hi := a.ExpectRange()
		hopt.Active = &health.Active{
			Path: a.Path, Host: a.Host, Interval: a.Interval.Std(), Timeout: a.Timeout.Std(),
			ExpectLo: lo, ExpectHi: hi, Healthy: a.HealthyThreshold, Unhealthy: a.UnhealthyThreshold,
		}
	}
	if old != nil {
		hopt.Prev = old.Health
	}
	up.Health = health.New(hopt, tr, up.setUsable)
	up.setUsable(tr.Targets())
	up.Limiter = circuit.New(u.Limits.MaxConcurrent, u.Limits.MaxPending, u.Limits.PendingTimeout.Std())
	if kind, name := u.Balance.HashKey(); kind != "" {
		up.Key = hashKey(kind, name)
	}
	return up
}

// policies maps configuration names to balancing policies.
var policies = map[config.Policy]balancer.Policy{
	config.PolicyRoundRobin:     balancer.PolicyRoundRobin,
	config.PolicyLeastRequest:   balancer.PolicyLeastRequest,
	config.PolicyConsistentHash: balancer.PolicyConsistentHash,
}

// hashKey returns the consistent-hash key extractor for a header or a
// cookie.
func hashKey(kind, name string) func(*http.Request) string {
	if kind == "cookie" {
		return func(r *http.Request) string {
			if c, err := r.Cookie(name); err == nil {
				return c.Value
			}
			return ""
		}
	}
	return func(r *http.Request) string { return r.Header.Get(name) }
}

// budget returns the retry budget of g's route name when its budget
// settings equal rc's, so that a reload does not hand out a fresh floor of
// retries; nil otherwise (g may be nil).
func (g *Generation) budget(name string, rc config.Retry) *retry.Budget {
	if g == nil {
		return nil
	}
	for i, rt := range g.Table.Routes {
		old := g.Config.Routes[i].Retry
		if rt.Name == name && old.BudgetRatio == rc.BudgetRatio && old.BudgetMinPerSecond == rc.BudgetMinPerSecond {
			return rt.Retry.Budget
		}
	}
	return nil
}

// buildRetry turns a route's retry configuration into its policy, with
// budget (nil: a new one).
func buildRetry(rc config.Retry, budget *retry.Budget) proxy.Retry {
	if budget == nil {
		budget = retry.NewBudget(rc.BudgetRatio, rc.BudgetMinPerSecond, nil)
	}
	return proxy.Retry{
		Attempts:   max(rc.Attempts, 1),
		PerTry:     rc.PerTryTimeout.Std(),
		Timeout:    rc.Timeout.Std(),
		Backoff:    rc.Backoff.Std(),
		MaxBackoff: rc.MaxBackoff.Std(),
		OnStatus:   rc.OnStatus,
		BodyBuffer: int64(rc.BodyBuffer),
		Budget:     budget,
	}
}

// buildTransport builds an upstream's transport, adopting the unchanged
// targets of old (which may be nil) with their pooled connections.
func buildTransport(name string, u *config.Upstream, old *Upstream) (*upstream.Transport, error) {
	opt := upstream.Options{
		Name:                  name,
		ConnKey:               connKey(u),
		ConnectTimeout:        u.Timeouts.Connect.Std(),
		ResponseHeaderTimeout: u.Timeouts.ResponseHeader.Std(),
		IdleTimeout:           u.Timeouts.Idle.Std(),
		PoolIdle:              u.Timeouts.PoolIdle.Std(),
		MaxIdlePerTarget:      u.MaxIdlePerTarget,
		HeadLimits:            upstream.Limits{Bytes: int(u.ResponseHeadLimit), Fields: maxHeadFields},
		Resolver:              u.Resolver,
		H2:                    u.Protocol == config.ProtocolH2,
	}
	if u.TLS != nil {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: u.TLS.ServerName}
		if u.TLS.CAFile != "" {
			pem, err := os.ReadFile(u.TLS.CAFile)
			if err != nil {
				return nil, fmt.Errorf("tls.ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, errors.New("tls.ca_file: no PEM certificate in " + u.TLS.CAFile)
			}
			cfg.RootCAs = pool
		}
		opt.TLS = cfg
	}
	specs := make([]upstream.TargetSpec, len(u.Targets))
	for i, t := range u.Targets {
		specs[i] = upstream.TargetSpec{URL: strings.TrimSuffix(t.URL, "/"), Weight: max(t.Weight, 1)}
	}
	var prev *upstream.Transport
	if old != nil {
		prev = old.Transport
	}
	return upstream.NewTargets(opt, specs, prev)
}

// connKey is what pooled connections to an upstream's targets depend on:
// the TLS settings (with the CA file's content) and the resolver.
func connKey(u *config.Upstream) string {
	c := config.Upstream{TLS: u.TLS, Resolver: u.Resolver}
	b, err := yaml.Marshal(&c)
	if err != nil {
		return ""
	}
	if u.TLS != nil && u.TLS.CAFile != "" {
		pem, _ := os.ReadFile(u.TLS.CAFile)
		sum := sha256.Sum256(pem)
		b = append(b, sum[:]...)
	}
	return string(b)
}

// Start starts the background work (active health checks) of the
// upstreams that prev (which may be nil) did not already run.
func (g *Generation) Start(prev *Generation) {
	for name, up := range g.Upstreams {
		if prev.upstream(name) != up {
			up.Health.Start()
		}
	}
}

// upstream returns g's upstream name; g may be nil.
func (g *Generation) upstream(name string) *Upstream {
	if g == nil {
		return nil
	}
	return g.Upstreams[name]
}

// Close stops health checks and releases pooled connections. Requests in
// flight finish; their connections are closed rather than pooled.
func (g *Generation) Close() { g.closeExcept(nil) }

// closeExcept closes g's upstreams that next does not use (next may be
// nil: close all).
func (g *Generation) closeExcept(next *Generation) {
	for name, up := range g.Upstreams {
		if next.upstream(name) == up {
			continue
		}
		if up.Health != nil {
			up.Health.Close()
		}
		up.Transport.Close()
	}
}
