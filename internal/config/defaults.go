package config

import (
	"net/netip"
	"path/filepath"
	"strings"
	"time"
)

// The defaults, as documented on the fields of [Config].
const (
	DefaultListen            = "127.0.0.1:8080"
	DefaultAdminFailures     = 100
	DefaultLogLevel          = "info"
	DefaultLogOutput         = "stderr"
	DefaultLogSample         = 1.0
	DefaultDrainTimeout      = Duration(30 * time.Second)
	DefaultWatch             = true
	DefaultStrictBuffer      = Size(1 << 20) // 1MiB
	DefaultStrictValidate    = ValidateNone
	DefaultUpgradeIdle       = Duration(10 * time.Minute)
	DefaultConnect           = Duration(2 * time.Second)
	DefaultResponseHeader    = Duration(30 * time.Second)
	DefaultIdle              = Duration(60 * time.Second)
	DefaultPoolIdle          = Duration(4 * time.Second)
	DefaultResponseHeadLimit = Size(64 << 10) // 64KiB
	DefaultMaxIdlePerTarget  = 64

	DefaultWeight                  = 1
	DefaultPolicy                  = PolicyRoundRobin
	DefaultHashLoadFactor          = 1.25
	DefaultActiveInterval          = Duration(5 * time.Second)
	DefaultActiveTimeout           = Duration(2 * time.Second)
	DefaultActiveExpect            = "200-399"
	DefaultHealthyThreshold        = 2
	DefaultUnhealthyThreshold      = 3
	DefaultConsecutiveFailures     = 5
	DefaultBaseEjection            = Duration(10 * time.Second)
	DefaultMaxEjection             = Duration(5 * time.Minute)
	DefaultMaxEjectedPercent       = 50
	DefaultPendingTimeout          = Duration(time.Second)
	DefaultRetryAttempts           = 2
	DefaultRetryBackoff            = Duration(25 * time.Millisecond)
	DefaultRetryMaxBackoff         = Duration(250 * time.Millisecond)
	DefaultRetryBodyBuffer         = Size(64 << 10) // 64KiB
	DefaultRetryBudgetRatio        = 0.2
	DefaultRetryBudgetMinPerSecond = 3

	DefaultMaxBody           = Size(64 << 20) // 64MiB
	DefaultProtocol          = ProtocolHTTP1
	DefaultMaxRequestLine    = Size(8 << 10)  // 8KiB
	DefaultMaxHeaderBytes    = Size(32 << 10) // 32KiB
	DefaultMaxHeaderFields   = 100
	DefaultReadHeaderTimeout = Duration(10 * time.Second)
	DefaultBodyTimeout       = Duration(30 * time.Second)
	DefaultWriteTimeout      = Duration(30 * time.Second)
	DefaultServerIdleTimeout = Duration(75 * time.Second)
	DefaultMaxConnections    = 20000
	DefaultTLSMinVersion     = "1.2"
	DefaultTLSHTTP2          = true

	DefaultTracingServiceName = "candor"
	DefaultTracingSample      = 1.0
)

// ApplyDefaults sets every field left at its zero value to its default:
//
//	listen                                           127.0.0.1:8080
//	admin.failures                                   100 (only when admin is present)
//	log.level                                        info
//	log.output                                       stderr
//	log.sample                                       1 (a nil Sample becomes a pointer to 1)
//	drain_timeout                                    30s
//	watch                                            true (a nil Watch becomes a pointer to true)
//	server.max_request_line                          8KiB
//	server.max_header_bytes                          32KiB
//	server.max_header_fields                         100
//	server.read_header_timeout                       10s
//	server.body_timeout                              30s
//	server.write_timeout                             30s
//	server.idle_timeout                              75s
//	server.max_connections                           20000
//	tls.min_version                                  1.2 (tls.*: only when tls is present)
//	tls.http2                                        true (a nil HTTP2 becomes a pointer to true)
//	routes[].max_body                                64MiB
//	routes[].strict.buffer                           1MiB (only when strict is present)
//	routes[].strict.validate                         none (only when strict is present)
//	routes[].upgrade.idle                            10m (only when upgrade is present)
//	routes[].retry.attempts                          2
//	routes[].retry.backoff                           25ms
//	routes[].retry.max_backoff                       250ms
//	routes[].retry.body_buffer                       64KiB
//	routes[].retry.budget_ratio                      0.2
//	routes[].retry.budget_min_per_second             3
//	upstreams.*.protocol                             http1
//	upstreams.*.targets[].weight                     1
//	upstreams.*.timeouts.connect                     2s
//	upstreams.*.timeouts.response_header             30s
//	upstreams.*.timeouts.idle                        60s
//	upstreams.*.timeouts.pool_idle                   4s
//	upstreams.*.response_head_limit                  64KiB
//	upstreams.*.max_idle_per_target                  64
//	upstreams.*.balance.policy                       round_robin
//	upstreams.*.balance.hash_load_factor             1.25 (only for consistent_hash)
//	upstreams.*.health.active.interval               5s (active.*: only when active is present)
//	upstreams.*.health.active.timeout                2s
//	upstreams.*.health.active.expect                 200-399
//	upstreams.*.health.active.healthy_threshold      2
//	upstreams.*.health.active.unhealthy_threshold    3
//	upstreams.*.health.passive.consecutive_failures  5
//	upstreams.*.health.passive.base_ejection         10s
//	upstreams.*.health.passive.max_ejection          5m
//	upstreams.*.health.passive.max_ejected_percent   50
//	upstreams.*.limits.pending_timeout               1s
//	tracing.service_name                             candor (tracing.*: only when tracing is present)
//	tracing.sample                                   1 (a nil Sample becomes a pointer to 1)
//
// routes[].retry.per_try_timeout and routes[].retry.timeout have no
// default: 0 means the upstream's timeouts.response_header and no overall
// limit.
//
// [Parse] applies the same defaults but only to keys absent from the file
// (or written without a value): a value written explicitly is kept and
// validated as written, so "max_idle_per_target: 0" keeps no idle
// connection and "buffer: 0" is an error.
func (c *Config) ApplyDefaults() { c.applyDefaults(nil) }

// applyDefaults sets the defaults of the fields that are zero and not
// given, where given reports whether the field at a path was written in
// the file (nil: nothing was).
func (c *Config) applyDefaults(given func(path string) bool) {
	unset := func(path string, zero bool) bool {
		return zero && (given == nil || !given(path))
	}
	if unset("listen", c.Listen == "") {
		c.Listen = DefaultListen
	}
	if a := c.Admin; a != nil && unset("admin.failures", a.Failures == 0) {
		a.Failures = DefaultAdminFailures
	}
	if unset("log.level", c.Log.Level == "") {
		c.Log.Level = DefaultLogLevel
	}
	if unset("log.output", c.Log.Output == "") {
		c.Log.Output = DefaultLogOutput
	}
	if c.Log.Sample == nil {
		sample := DefaultLogSample
		c.Log.Sample = &sample
	}
	if t := c.Tracing; t != nil {
		if unset("tracing.service_name", t.ServiceName == "") {
			t.ServiceName = DefaultTracingServiceName
		}
		if t.Sample == nil {
			sample := DefaultTracingSample
			t.Sample = &sample
		}
	}
	if unset("drain_timeout", c.DrainTimeout == 0) {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Watch == nil {
		watch := DefaultWatch
		c.Watch = &watch
	}
	sv := &c.Server
	for _, d := range []struct {
		field *Duration
		key   string
		def   Duration
	}{
		{&sv.ReadHeaderTimeout, "read_header_timeout", DefaultReadHeaderTimeout},
		{&sv.BodyTimeout, "body_timeout", DefaultBodyTimeout},
		{&sv.WriteTimeout, "write_timeout", DefaultWriteTimeout},
		{&sv.IdleTimeout, "idle_timeout", DefaultServerIdleTimeout},
	} {
		if unset("server."+d.key, *d.field == 0) {
			*d.field = d.def
		}
	}
	for _, d := range []struct {
		field *Size
		key   string
		def   Size
	}{
		{&sv.MaxRequestLine, "max_request_line", DefaultMaxRequestLine},
		{&sv.MaxHeaderBytes, "max_header_bytes", DefaultMaxHeaderBytes},
	} {
		if unset("server."+d.key, *d.field == 0) {
			*d.field = d.def
		}
	}
	if unset("server.max_header_fields", sv.MaxHeaderFields == 0) {
		sv.MaxHeaderFields = DefaultMaxHeaderFields
	}
	if unset("server.max_connections", sv.MaxConnections == 0) {
		sv.MaxConnections = DefaultMaxConnections
	}
	if t := c.TLS; t != nil {
		if unset("tls.min_version", t.MinVersion == "") {
			t.MinVersion = DefaultTLSMinVersion
		}
		if t.HTTP2 == nil {
			h2 := DefaultTLSHTTP2
			t.HTTP2 = &h2
		}
	}
	for i := range c.Routes {
		if unset(index("routes", i)+".max_body", c.Routes[i].MaxBody == 0) {
			c.Routes[i].MaxBody = DefaultMaxBody
		}
		s, p := c.Routes[i].Strict, index("routes", i)+".strict"
		if s != nil {
			if unset(p+".buffer", s.Buffer == 0) {
				s.Buffer = DefaultStrictBuffer
			}
			if unset(p+".validate", s.Validate == "") {
				s.Validate = DefaultStrictValidate
			}
		}
		if up, p := c.Routes[i].Upgrade, index("routes", i)+".upgrade"; up != nil {
			if unset(p+".idle", up.Idle == 0) {
				up.Idle = DefaultUpgradeIdle
			}
		}
		r, rp := &c.Routes[i].Retry, index("routes", i)+".retry"
		if unset(rp+".attempts", r.Attempts == 0) {
			r.Attempts = DefaultRetryAttempts
		}
		if unset(rp+".backoff", r.Backoff == 0) {
			r.Backoff = DefaultRetryBackoff
		}
		if unset(rp+".max_backoff", r.MaxBackoff == 0) {
			r.MaxBackoff = DefaultRetryMaxBackoff
		}
		if unset(rp+".body_buffer", r.BodyBuffer == 0) {
			r.BodyBuffer = DefaultRetryBodyBuffer
		}
		if unset(rp+".budget_ratio", r.BudgetRatio == 0) {
			r.BudgetRatio = DefaultRetryBudgetRatio
		}
		if unset(rp+".budget_min_per_second", r.BudgetMinPerSecond == 0) {
			r.BudgetMinPerSecond = DefaultRetryBudgetMinPerSecond
		}
	}
	for name, u := range c.Upstreams {
		if u == nil {
			continue
		}
		p := join("upstreams", name)
		if unset(p+".protocol", u.Protocol == "") {
			u.Protocol = DefaultProtocol
		}
		t := &u.Timeouts
		for _, d := range []struct {
			field *Duration
			key   string
			def   Duration
		}{
			{&t.Connect, "connect", DefaultConnect},
			{&t.ResponseHeader, "response_header", DefaultResponseHeader},
			{&t.Idle, "idle", DefaultIdle},
			{&t.PoolIdle, "pool_idle", DefaultPoolIdle},
		} {
			if unset(p+".timeouts."+d.key, *d.field == 0) {
				*d.field = d.def
			}
		}
		if unset(p+".response_head_limit", u.ResponseHeadLimit == 0) {
			u.ResponseHeadLimit = DefaultResponseHeadLimit
		}
		if unset(p+".max_idle_per_target", u.MaxIdlePerTarget == 0) {
			u.MaxIdlePerTarget = DefaultMaxIdlePerTarget
		}
		for j := range u.Targets {
			if unset(index(p+".targets", j)+".weight", u.Targets[j].Weight == 0) {
				u.Targets[j].Weight = DefaultWeight
			}
		}
		b := &u.Balance
		if unset(p+".balance.policy", b.Policy == "") {
			b.Policy = DefaultPolicy
		}
		if b.Policy == PolicyConsistentHash && unset(p+".balance.hash_load_factor", b.HashLoadFactor == 0) {
			b.HashLoadFactor = DefaultHashLoadFactor
		}
		if a, ap := u.Health.Active, p+".health.active"; a != nil {
			if unset(ap+".interval", a.Interval == 0) {
				a.Interval = DefaultActiveInterval
			}
			if unset(ap+".timeout", a.Timeout == 0) {
				a.Timeout = DefaultActiveTimeout
			}
			if unset(ap+".expect", a.Expect == "") {
				a.Expect = DefaultActiveExpect
			}
			if unset(ap+".healthy_threshold", a.HealthyThreshold == 0) {
				a.HealthyThreshold = DefaultHealthyThreshold
			}
			if unset(ap+".unhealthy_threshold", a.UnhealthyThreshold == 0) {
				a.UnhealthyThreshold = DefaultUnhealthyThreshold
			}
		}
		ps, pp := &u.Health.Passive, p+".health.passive"
		if unset(pp+".consecutive_failures", ps.ConsecutiveFailures == 0) {
			ps.ConsecutiveFailures = DefaultConsecutiveFailures
		}
		if unset(pp+".base_ejection", ps.BaseEjection == 0) {
			ps.BaseEjection = DefaultBaseEjection
		}
		if unset(pp+".max_ejection", ps.MaxEjection == 0) {
			ps.MaxEjection = DefaultMaxEjection
		}
		if unset(pp+".max_ejected_percent", ps.MaxEjectedPercent == 0) {
			ps.MaxEjectedPercent = DefaultMaxEjectedPercent
		}
		if unset(p+".limits.pending_timeout", u.Limits.PendingTimeout == 0) {
			u.Limits.PendingTimeout = DefaultPendingTimeout
		}
	}
}

// normalize rewrites fields to the form the rest of candor expects:
// match.host lower-cased (an IP literal in canonical form, without
// brackets), upgrade.protocols lower-cased, and tls.ca_file and a log.output
// file made absolute against the folder of c.File. Invalid values are left
// alone for validation to report.
func (c *Config) normalize() {
	for i := range c.Routes {
		if up := c.Routes[i].Upgrade; up != nil {
			for j, p := range up.Protocols {
				if validToken(p) {
					up.Protocols[j] = strings.ToLower(p)
				}
			}
		}
		m := &c.Routes[i].Match
		if m.Host == "" {
			continue
		}
		h := strings.ToLower(m.Host)
		if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")); err == nil && a.Zone() == "" {
			h = a.String()
		}
		m.Host = h
	}
	dir := filepath.Dir(c.File)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	if o := c.Log.Output; logFile(o) && !filepath.IsAbs(o) {
		c.Log.Output = filepath.Join(dir, o)
	}
	if t := c.TLS; t != nil {
		for i := range t.Certificates {
			for _, f := range []*string{&t.Certificates[i].Cert, &t.Certificates[i].Key} {
				if *f != "" && !filepath.IsAbs(*f) {
					*f = filepath.Join(dir, *f)
				}
			}
		}
	}
	for _, u := range c.Upstreams {
		if u == nil || u.TLS == nil || u.TLS.CAFile == "" || filepath.IsAbs(u.TLS.CAFile) {
			continue
		}
		u.TLS.CAFile = filepath.Join(dir, u.TLS.CAFile)
	}
}

// logFile reports whether a log.output value names a file rather than a
// standard stream (or nothing).
func logFile(output string) bool {
	return output != "" && output != "stderr" && output != "stdout"
}
