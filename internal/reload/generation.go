// Package reload builds a Generation (routes, upstream transports and
// pickers) from a validated configuration. A Generation is immutable once
// built; the proxy handler swaps whole generations, so a configuration is
// either entirely in force or not at all.
package reload

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"candor/internal/balancer"
	"candor/internal/circuit"
	"candor/internal/config"
	"candor/internal/health"
	"candor/internal/proxy"
	"candor/internal/retry"
	"candor/internal/router"
	"candor/internal/upstream"
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
// pools), balancer, health checker and concurrency limiter.
type Upstream struct {
	Transport *upstream.Transport
	Balancer  *balancer.Balancer
	Health    *health.Checker
	Limiter   *circuit.Limiter
	// Key extracts a request's consistent-hash key; nil for other
	// policies.
	Key func(*http.Request) string
}

// Build builds a Generation from cfg, which must have been validated by
// package config. On error nothing is left running.
func Build(cfg *config.Config, log *slog.Logger) (*Generation, error) {
	g := &Generation{Config: cfg, Upstreams: make(map[string]*Upstream, len(cfg.Upstreams))}
	for name, u := range cfg.Upstreams {
		tr, err := buildTransport(name, u)
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("%s:%d: upstreams.%s: %w", cfg.File, u.Line, name, err)
		}
		g.Upstreams[name] = buildUpstream(name, u, tr, log)
	}
	rules := make([]router.Rule, len(cfg.Routes))
	routes := make([]*proxy.Route, len(cfg.Routes))
	for i, rc := range cfg.Routes {
		up := g.Upstreams[rc.Upstream]
		if up == nil {
			g.Close()
			return nil, fmt.Errorf("%s:%d: routes[%d].upstream: no upstream %q", cfg.File, rc.Line, i, rc.Upstream)
		}
		rules[i] = router.Rule{Host: rc.Match.Host, PathPrefix: rc.Match.PathPrefix}
		rt := &proxy.Route{
			Name: rc.Name, Upstream: up.Transport, Picker: up.Balancer,
			Limiter: up.Limiter, Health: up.Health, Key: up.Key,
			Retry: buildRetry(rc.Retry),
		}
		if rc.Strict != nil {
			rt.Strict = &proxy.Strict{Buffer: int64(rc.Strict.Buffer), JSON: rc.Strict.Validate == config.ValidateJSON}
		}
		routes[i] = rt
	}
	g.Table = &proxy.Table{Router: router.New(rules), Routes: routes}
	return g, nil
}

// buildUpstream wires a transport to its balancer, health checker and
// limiter: health publishes the usable targets to the balancer.
func buildUpstream(name string, u *config.Upstream, tr *upstream.Transport, log *slog.Logger) *Upstream {
	for i, tg := range tr.Targets() {
		tg.Weight = max(u.Targets[i].Weight, 1)
	}
	up := &Upstream{Transport: tr}
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
	up.Health = health.New(hopt, tr, up.Balancer.Update)
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

// buildRetry turns a route's retry configuration into its policy, with
// its own budget.
func buildRetry(rc config.Retry) proxy.Retry {
	return proxy.Retry{
		Attempts:   max(rc.Attempts, 1),
		PerTry:     rc.PerTryTimeout.Std(),
		Timeout:    rc.Timeout.Std(),
		Backoff:    rc.Backoff.Std(),
		MaxBackoff: rc.MaxBackoff.Std(),
		OnStatus:   rc.OnStatus,
		BodyBuffer: int64(rc.BodyBuffer),
		Budget:     retry.NewBudget(rc.BudgetRatio, rc.BudgetMinPerSecond, nil),
	}
}

func buildTransport(name string, u *config.Upstream) (*upstream.Transport, error) {
	opt := upstream.Options{
		Name:                  name,
		ConnectTimeout:        u.Timeouts.Connect.Std(),
		ResponseHeaderTimeout: u.Timeouts.ResponseHeader.Std(),
		IdleTimeout:           u.Timeouts.Idle.Std(),
		PoolIdle:              u.Timeouts.PoolIdle.Std(),
		MaxIdlePerTarget:      u.MaxIdlePerTarget,
		HeadLimits:            upstream.Limits{Bytes: int(u.ResponseHeadLimit), Fields: maxHeadFields},
		Resolver:              u.Resolver,
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
	urls := make([]string, len(u.Targets))
	for i, t := range u.Targets {
		urls[i] = strings.TrimSuffix(t.URL, "/")
	}
	return upstream.New(opt, urls)
}

// Start starts the generation's background work (active health checks).
func (g *Generation) Start() {
	for _, up := range g.Upstreams {
		up.Health.Start()
	}
}

// Close stops health checks and releases pooled connections. Requests in
// flight finish.
func (g *Generation) Close() {
	for _, up := range g.Upstreams {
		if up.Health != nil {
			up.Health.Close()
		}
		up.Transport.Close()
	}
}
