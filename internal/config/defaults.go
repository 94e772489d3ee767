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
	DefaultLogLevel          = "info"
	DefaultStrictBuffer      = Size(1 << 20) // 1MiB
	DefaultStrictValidate    = ValidateNone
	DefaultConnect           = Duration(2 * time.Second)
	DefaultResponseHeader    = Duration(30 * time.Second)
	DefaultIdle              = Duration(60 * time.Second)
	DefaultPoolIdle          = Duration(4 * time.Second)
	DefaultResponseHeadLimit = Size(64 << 10) // 64KiB
	DefaultMaxIdlePerTarget  = 64
)

// ApplyDefaults sets every field left at its zero value to its default:
//
//	listen                          127.0.0.1:8080
//	log.level                       info
//	routes[].strict.buffer          1MiB   (only when strict is present)
//	routes[].strict.validate        none   (only when strict is present)
//	upstreams.*.timeouts.connect          2s
//	upstreams.*.timeouts.response_header  30s
//	upstreams.*.timeouts.idle             60s
//	upstreams.*.timeouts.pool_idle        4s
//	upstreams.*.response_head_limit       64KiB
//	upstreams.*.max_idle_per_target       64
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
	if unset("log.level", c.Log.Level == "") {
		c.Log.Level = DefaultLogLevel
	}
	for i := range c.Routes {
		s, p := c.Routes[i].Strict, index("routes", i)+".strict"
		if s == nil {
			continue
		}
		if unset(p+".buffer", s.Buffer == 0) {
			s.Buffer = DefaultStrictBuffer
		}
		if unset(p+".validate", s.Validate == "") {
			s.Validate = DefaultStrictValidate
		}
	}
	for name, u := range c.Upstreams {
		if u == nil {
			continue
		}
		p := join("upstreams", name)
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
	}
}

// normalize rewrites fields to the form the rest of candor expects:
// match.host lower-cased (an IP literal in canonical form, without
// brackets) and tls.ca_file made absolute against the folder of c.File.
// Invalid values are left alone for validation to report.
func (c *Config) normalize() {
	for i := range c.Routes {
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
	for _, u := range c.Upstreams {
		if u == nil || u.TLS == nil || u.TLS.CAFile == "" || filepath.IsAbs(u.TLS.CAFile) {
			continue
		}
		u.TLS.CAFile = filepath.Join(dir, u.TLS.CAFile)
	}
}
