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
	"os"
	"strings"

	"candor/internal/balancer"
	"candor/internal/config"
	"candor/internal/proxy"
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
	Upstreams map[string]*upstream.Transport
}

// Build builds a Generation from cfg, which must have been validated by
// package config. On error nothing is left running.
func Build(cfg *config.Config) (*Generation, error) {
	g := &Generation{Config: cfg, Upstreams: make(map[string]*upstream.Transport, len(cfg.Upstreams))}
	for name, u := range cfg.Upstreams {
		tr, err := buildUpstream(name, u)
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("%s:%d: upstreams.%s: %w", cfg.File, u.Line, name, err)
		}
		g.Upstreams[name] = tr
	}
	rules := make([]router.Rule, len(cfg.Routes))
	routes := make([]*proxy.Route, len(cfg.Routes))
	for i, rc := range cfg.Routes {
		tr := g.Upstreams[rc.Upstream]
		if tr == nil {
			g.Close()
			return nil, fmt.Errorf("%s:%d: routes[%d].upstream: no upstream %q", cfg.File, rc.Line, i, rc.Upstream)
		}
		rules[i] = router.Rule{Host: rc.Match.Host, PathPrefix: rc.Match.PathPrefix}
		rt := &proxy.Route{Name: rc.Name, Upstream: tr, Picker: balancer.NewRoundRobin(tr.Targets())}
		if rc.Strict != nil {
			rt.Strict = &proxy.Strict{Buffer: int64(rc.Strict.Buffer), JSON: rc.Strict.Validate == config.ValidateJSON}
		}
		routes[i] = rt
	}
	g.Table = &proxy.Table{Router: router.New(rules), Routes: routes}
	return g, nil
}

func buildUpstream(name string, u *config.Upstream) (*upstream.Transport, error) {
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

// Close releases the generation's pooled connections and background work.
// Requests in flight finish.
func (g *Generation) Close() {
	for _, tr := range g.Upstreams {
		tr.Close()
	}
}
