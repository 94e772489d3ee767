// Package config defines candor's configuration file: its schema, strict
// decoding (unknown keys are errors), defaults and validation. Every error
// names the file, the line and the field.
//
// The YAML keys are a public contract: documented in README.md and kept
// stable.
package config

import "time"

// Config is one candor configuration file, decoded, defaulted and validated.
type Config struct {
	// Listen is the gateway's address, host:port. Default: 127.0.0.1:8080.
	Listen string `yaml:"listen"`
	// Admin configures the admin listener; absent (or null) means none.
	Admin *Admin `yaml:"admin"`
	// Log configures candor's structured log.
	Log Log `yaml:"log"`
	// Routes are matched in file order; the first match wins.
	Routes []Route `yaml:"routes"`
	// Upstreams by name.
	Upstreams map[string]*Upstream `yaml:"upstreams"`

	// File is the absolute path the configuration was read from, or the
	// name given to [Parse].
	File string `yaml:"-"`
}

// Admin is the admin listener.
type Admin struct {
	// Listen is the admin listener's address, host:port. Required when
	// admin is present.
	Listen string `yaml:"listen"`
}

// Log configures the structured (JSON) log written to standard error.
type Log struct {
	// Level is debug, info, warn or error. Default: info. Gateway errors
	// are logged at warn (upstream faults) or error (candor's own).
	Level string `yaml:"level"`
	// Access logs every request, successes included, at info. Default:
	// false (only gateway errors are logged).
	Access bool `yaml:"access"`
}

// Route maps matching requests to an upstream.
type Route struct {
	// Name identifies the route in logs and metrics. Required, unique.
	Name string `yaml:"name"`
	// Match selects requests; an empty match matches everything.
	Match Match `yaml:"match"`
	// Upstream names an entry of [Config.Upstreams]. Required.
	Upstream string `yaml:"upstream"`
	// Strict, when present, buffers and validates responses before
	// committing a status. Write "strict: {}" for the defaults; absent (or
	// null) means responses stream through.
	Strict *Strict `yaml:"strict"`

	// Line is the line of the route's list item in the file, set by
	// [Parse].
	Line int `yaml:"-"`
}

// Match selects requests by host and path prefix; both are optional.
type Match struct {
	// Host matches the request's Host without port, case-insensitively: a
	// host name or an IP address (IPv6 with or without brackets). [Parse]
	// stores it lower-cased, an IP address in canonical form without
	// brackets ("[2001:DB8::1]" becomes "2001:db8::1").
	Host string `yaml:"host"`
	// PathPrefix matches the start of the request's path. It must begin
	// with "/".
	PathPrefix string `yaml:"path_prefix"`
}

// Validate names a body check of strict mode.
type Validate string

// The body checks.
const (
	// ValidateNone checks framing only.
	ValidateNone Validate = "none"
	// ValidateJSON requires valid JSON (RFC 8259) when the response's media
	// type is application/json or ends in +json.
	ValidateJSON Validate = "json"
)

// Strict configures strict mode on a route.
type Strict struct {
	// Buffer is the largest response body buffered, in bytes ("1MiB",
	// "64KiB", "512"), from 1 byte to 1GiB. Default: 1MiB. A larger
	// response is a 502 upstream_response_too_large.
	Buffer Size `yaml:"buffer"`
	// Validate is none or json. Default: none.
	Validate Validate `yaml:"validate"`
}

// Upstream is a set of interchangeable targets and how to talk to them.
type Upstream struct {
	// Targets may be empty: the upstream then answers 503
	// no_healthy_upstream (a way to park a route). Each target is listed
	// once.
	Targets []Target `yaml:"targets"`
	// Timeouts for connecting and reading.
	Timeouts Timeouts `yaml:"timeouts"`
	// TLS settings for https targets.
	TLS *TLS `yaml:"tls"`
	// Resolver is a DNS server, IP:port (not a name), for target names.
	// Default: the system resolver.
	Resolver string `yaml:"resolver"`
	// ResponseHeadLimit bounds the response status line plus headers, in
	// bytes, from 1KiB to 1MiB. Default: 64KiB.
	ResponseHeadLimit Size `yaml:"response_head_limit"`
	// MaxIdlePerTarget bounds pooled idle connections per target, from 0
	// to 100000. Default: 64 when absent from the file; an explicit 0 keeps
	// no idle connection (see [Config.ApplyDefaults]).
	MaxIdlePerTarget int `yaml:"max_idle_per_target"`

	// Name is the upstream's key in [Config.Upstreams], set by [Parse].
	Name string `yaml:"-"`
	// Line is the line of the upstream's key in the file, set by [Parse].
	Line int `yaml:"-"`
}

// Target is one upstream server.
type Target struct {
	// URL is http://host[:port] or https://host[:port]; host may be a
	// name or an IP literal. No path, query, fragment or user info.
	URL string `yaml:"url"`

	// Line is the line of the target's list item in the file, set by
	// [Parse].
	Line int `yaml:"-"`
}

// Timeouts bound the phases of an upstream attempt.
type Timeouts struct {
	// Connect bounds DNS resolution, TCP connect and TLS handshake
	// together. Default: 2s.
	Connect Duration `yaml:"connect"`
	// ResponseHeader bounds the wait for the complete response head after
	// the request was written. Default: 30s.
	ResponseHeader Duration `yaml:"response_header"`
	// Idle is the longest silence while reading a response body (or while
	// the upstream accepts the request body), at most 24h. Default: 60s.
	Idle Duration `yaml:"idle"`
	// PoolIdle is how long an idle pooled connection is kept, at most 24h.
	// Default: 4s,
	// below common upstream keep-alive timeouts (Node.js: 5s) so that
	// candor, not the upstream, closes idle connections. A Keep-Alive:
	// timeout=N hint from the upstream shortens it.
	PoolIdle Duration `yaml:"pool_idle"`
}

// TLS configures TLS to https targets; it is an error on an upstream
// without an https target.
type TLS struct {
	// CAFile is a PEM file of trusted authorities, relative to the
	// configuration file's folder; [Parse] stores it absolute. It must hold
	// at least one certificate. Default: the system roots.
	CAFile string `yaml:"ca_file"`
	// ServerName is the name verified in the certificate and sent as SNI:
	// a DNS name or an IP address. Default: the target URL's host.
	ServerName string `yaml:"server_name"`
}

// Duration is a [time.Duration] written as "2s", "150ms", "1m30s": always
// with a unit, always greater than zero (see [Duration.UnmarshalYAML]).
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// Size is a byte count written as "512", "64KiB", "1MiB", "1GiB" (also "KB",
// "MB", "GB" as powers of 1000); see [Size.UnmarshalYAML].
type Size int64
