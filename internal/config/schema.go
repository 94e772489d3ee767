// Package config defines candor's configuration file: its schema, strict
// decoding (unknown keys are errors), defaults and validation. Every error
// names the file, the line and the field.
//
// The YAML keys are a public contract: documented in README.md and kept
// stable.
package config

import (
	"net/textproto"
	"time"
)

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
	// DrainTimeout bounds a graceful shutdown (SIGTERM): in-flight
	// requests get this long to finish, at most 10m. Default: 30s.
	DrainTimeout Duration `yaml:"drain_timeout"`
	// Watch reloads the configuration when its file changes. Default:
	// true. SIGHUP and the admin API reload regardless. [Parse] and
	// [Config.ApplyDefaults] leave it non-nil; nil means true (see
	// [Config.Watching]).
	Watch *bool `yaml:"watch"`
	// Upstreams by name.
	Upstreams map[string]*Upstream `yaml:"upstreams"`
	// Tracing configures OpenTelemetry traces; absent: no tracing.
	Tracing *Tracing `yaml:"tracing"`
	// Server sets the downstream server's limits and timeouts, for the
	// listen address and the TLS listener alike.
	Server Server `yaml:"server"`
	// TLS, when present, adds a TLS listener (HTTPS, and HTTP/2 through
	// ALPN) next to the plain one at Listen.
	TLS *ListenTLS `yaml:"tls"`
	// TrustedProxies lists the CIDR networks of proxies in front of
	// candor whose forwarding fields (X-Forwarded-For, -Proto, -Host,
	// Forwarded) are kept and appended to. A request from any other peer
	// has those fields replaced by candor's own. Default: none.
	TrustedProxies []string `yaml:"trusted_proxies"`

	// File is the absolute path the configuration was read from, or the
	// name given to [Parse].
	File string `yaml:"-"`
}

// Admin is the admin listener.
type Admin struct {
	// Listen is the admin listener's address, host:port. Required when
	// admin is present.
	Listen string `yaml:"listen"`
	// Token, when set, is required as "Authorization: Bearer TOKEN" on
	// every admin request. Required when Listen is not a loopback
	// address. Marshalling leaves an empty Token out: written as "", it is
	// an error.
	Token string `yaml:"token,omitempty"`
	// Failures is how many recent gateway failures GET /failures keeps.
	// Default: 100.
	Failures int `yaml:"failures"`
}

// Log configures the structured (JSON) log written to standard error.
type Log struct {
	// Level is debug, info, warn or error. Default: info. Gateway errors
	// are logged at warn (upstream faults) or error (candor's own).
	Level string `yaml:"level"`
	// Access logs every request, successes included, at info. Default:
	// false (only gateway errors are logged).
	Access bool `yaml:"access"`
	// Output is where the log goes: stderr, stdout, or a file path
	// (appended to; relative to the configuration's folder). Default:
	// stderr. A change of output needs a restart.
	Output string `yaml:"output"`
	// Sample is the fraction of successful requests logged when Access is
	// set, 0 to 1; failures are always logged. Default: 1.
	Sample *float64 `yaml:"sample"`
	// Query logs request query strings, which may carry secrets. Default:
	// false (the path only).
	Query bool `yaml:"query"`
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
	// Maintenance takes the route out of service: new requests get 503
	// route_maintenance with Retry-After; in-flight ones finish. Default:
	// false.
	Maintenance bool `yaml:"maintenance"`
	// Upgrade allows protocol upgrades (WebSocket) on the route, proxied
	// as a tunnel. Absent: Upgrade requests are forwarded as plain
	// requests, without their Upgrade.
	Upgrade *Upgrade `yaml:"upgrade"`
	// Retry configures retries of failed attempts on other targets.
	// Retries are on by default, only where safe, within a budget.
	Retry Retry `yaml:"retry"`
	// MaxBody is the largest request body the route accepts: a larger
	// declared Content-Length is answered 413 before any of the body is
	// read; a chunked body is cut off and answered 413 when it grows past
	// it. Default: 64MiB.
	MaxBody Size `yaml:"max_body"`

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
	// Protocol is the HTTP version spoken to the targets: http1 (candor's
	// strict HTTP/1.1 client) or h2 (HTTP/2: over TLS for https targets,
	// prior knowledge h2c for http targets; what gRPC needs). Default:
	// http1.
	Protocol Protocol `yaml:"protocol"`
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
	// Balance chooses how a target is picked.
	Balance Balance `yaml:"balance"`
	// Health configures active checks and passive (outlier) ejection.
	Health Health `yaml:"health"`
	// Limits bound concurrent requests (circuit breaking).
	Limits Limits `yaml:"limits"`

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
	// Drain stops new requests to the target (in-flight ones finish);
	// the other targets take its traffic. Default: false.
	Drain bool `yaml:"drain"`
	// Weight is the target's share of traffic relative to the others,
	// 1 to 1000. Default: 1.
	Weight int `yaml:"weight"`

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

// Policy names a balancing policy.
type Policy string

// The balancing policies.
const (
	// PolicyRoundRobin is smooth weighted round robin.
	PolicyRoundRobin Policy = "round_robin"
	// PolicyLeastRequest picks the less loaded (in-flight requests divided
	// by weight) of two random targets.
	PolicyLeastRequest Policy = "least_request"
	// PolicyConsistentHash maps a request key (a header or cookie) to a
	// target on a hash ring, with bounded load.
	PolicyConsistentHash Policy = "consistent_hash"
)

// Balance configures target selection.
type Balance struct {
	// Policy is round_robin, least_request or consistent_hash. Default:
	// round_robin.
	Policy Policy `yaml:"policy"`
	// HashOn is the request key of consistent_hash: "header:NAME" or
	// "cookie:NAME". Required for consistent_hash, not allowed otherwise.
	// A request without the key is balanced round robin.
	HashOn string `yaml:"hash_on"`
	// HashLoadFactor bounds a consistent_hash target's load to this
	// multiple of the average in-flight load (consistent hashing with
	// bounded loads). Between 1 and 10; default: 1.25.
	HashLoadFactor float64 `yaml:"hash_load_factor"`
}

// Health configures target health.
type Health struct {
	// Active, when present, probes every target on a schedule.
	Active *ActiveHealth `yaml:"active"`
	// Passive ejects targets that fail real traffic. It is on by default;
	// set consecutive_failures to 0 to turn it off.
	Passive PassiveHealth `yaml:"passive"`
}

// ActiveHealth probes each target with GET Path.
type ActiveHealth struct {
	// Path is the request-target probed, beginning with "/". Required.
	Path string `yaml:"path"`
	// Host is the Host header of probes. Default: the target's host:port.
	Host string `yaml:"host"`
	// Interval between probes of a target. Default: 5s.
	Interval Duration `yaml:"interval"`
	// Timeout of one probe (connect to complete response). Default: 2s.
	Timeout Duration `yaml:"timeout"`
	// Expect is the range of statuses that count as healthy, "200-399"
	// or a single status "204". Default: "200-399".
	Expect string `yaml:"expect"`
	// HealthyThreshold is the number of consecutive passing probes that
	// bring a target back. Default: 2.
	HealthyThreshold int `yaml:"healthy_threshold"`
	// UnhealthyThreshold is the number of consecutive failing probes that
	// take a target out. Default: 3.
	UnhealthyThreshold int `yaml:"unhealthy_threshold"`
}

// PassiveHealth ejects targets on consecutive gateway failures of real
// traffic: connection refused or reset, timeouts, malformed responses.
// An upstream's own valid 5xx counts only when Count5xx is set.
type PassiveHealth struct {
	// ConsecutiveFailures ejects a target after this many failures in a
	// row. 0 turns passive health off. Default: 5.
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// BaseEjection is the first ejection's length; each further ejection
	// of the same target lasts one more BaseEjection, up to MaxEjection.
	// Default: 10s.
	BaseEjection Duration `yaml:"base_ejection"`
	// MaxEjection caps an ejection's length. Default: 5m.
	MaxEjection Duration `yaml:"max_ejection"`
	// MaxEjectedPercent caps the share of an upstream's targets ejected
	// at once, 0 to 100 (at least one target may always be ejected when
	// there are two or more). Default: 50.
	MaxEjectedPercent int `yaml:"max_ejected_percent"`
	// Count5xx also counts an upstream's own 5xx responses as failures.
	// Default: false.
	Count5xx bool `yaml:"count_5xx"`
}

// Limits bound concurrent requests to an upstream (circuit breaking).
// Zero means unlimited. Requests beyond MaxConcurrent wait in a queue of
// MaxPending; beyond that they are answered 503 upstream_overloaded at
// once.
type Limits struct {
	// MaxConcurrent bounds requests in flight to the whole upstream.
	MaxConcurrent int `yaml:"max_concurrent"`
	// MaxPending bounds requests waiting for a slot. Default: 0 (none
	// wait).
	MaxPending int `yaml:"max_pending"`
	// PendingTimeout bounds a wait for a slot. Default: 1s.
	PendingTimeout Duration `yaml:"pending_timeout"`
	// TargetMaxConcurrent bounds requests in flight to each target; a
	// target at its limit is skipped by the balancer.
	TargetMaxConcurrent int `yaml:"target_max_concurrent"`
}

// Retry configures a route's retries. A failed attempt is retried on
// another target only when that is safe: nothing was sent (DNS, connect,
// TLS failures), or the method is idempotent or the request carries
// Idempotency-Key and its body was buffered for replay.
type Retry struct {
	// Attempts is the most attempts per request, first one included, 1 to
	// 10. 1 turns retries off. Default: 2.
	Attempts int `yaml:"attempts"`
	// PerTryTimeout bounds one attempt's wait for the response head.
	// Default: the upstream's timeouts.response_header. 0 in a [Config]
	// means the default; the file leaves the key out (durations in the file
	// are greater than 0).
	PerTryTimeout Duration `yaml:"per_try_timeout,omitempty"`
	// Timeout bounds all attempts of a request together, back-off
	// included. Default: none (0 in a [Config]; the file leaves the key
	// out).
	Timeout Duration `yaml:"timeout,omitempty"`
	// Backoff is the base of the jittered exponential back-off between
	// attempts. Default: 25ms.
	Backoff Duration `yaml:"backoff"`
	// MaxBackoff caps the back-off. Default: 250ms.
	MaxBackoff Duration `yaml:"max_backoff"`
	// OnStatus lists upstream statuses that are retried (e.g. [503]).
	// Default: none: an upstream's own response is passed through.
	OnStatus []int `yaml:"on_status"`
	// BodyBuffer is the largest request body buffered for replay; a
	// larger body is streamed and its request not retried once sent.
	// Default: 64KiB.
	BodyBuffer Size `yaml:"body_buffer"`
	// BudgetRatio caps retries to this fraction of the requests of the
	// last 10 seconds, 0 to 1. Default: 0.2.
	BudgetRatio float64 `yaml:"budget_ratio"`
	// BudgetMinPerSecond is a floor of retries per second allowed
	// whatever the ratio. Default: 3.
	BudgetMinPerSecond int `yaml:"budget_min_per_second"`
}

// HashKey returns the request key of [PolicyConsistentHash] named by
// HashOn: ("header", NAME) with NAME in canonical form ("x-user-id"
// becomes "X-User-Id"), or ("cookie", NAME) with NAME as written (cookie
// names are case-sensitive). It returns ("", "") when HashOn is empty or
// invalid; [Config.Validate] rejects an invalid HashOn.
func (b Balance) HashKey() (kind, name string) {
	kind, name, ok := splitHashOn(b.HashOn)
	if !ok {
		return "", ""
	}
	if kind == "header" {
		name = textproto.CanonicalMIMEHeaderKey(name)
	}
	return kind, name
}

// ExpectRange returns the range of statuses that count as healthy, lo to
// hi inclusive, from Expect: "200-399" gives 200, 399 and "204" gives 204,
// 204. After [Parse] (or a nil [Config.Validate]) 100 <= lo <= hi <= 599;
// for an Expect that is empty or invalid it returns 0, 0, which no status
// matches.
func (a *ActiveHealth) ExpectRange() (lo, hi int) {
	lo, hi, ok := parseExpect(a.Expect)
	if !ok {
		return 0, 0
	}
	return lo, hi
}

// Watching reports whether the configuration file is watched for
// changes: Watch, or true when Watch is nil.
func (c *Config) Watching() bool { return c.Watch == nil || *c.Watch }

// Upgrade configures protocol upgrades on a route.
type Upgrade struct {
	// Protocols lists the Upgrade tokens allowed, e.g. [websocket].
	// Required, case-insensitive: [Parse] stores them lower-cased. Each is
	// a token (RFC 9110), listed once; h2c is never forwarded.
	Protocols []string `yaml:"protocols"`
	// Idle closes a tunnel after this long without a byte in either
	// direction, at most 24h. Default: 10m.
	Idle Duration `yaml:"idle"`
}

// Tracing configures OpenTelemetry tracing: a server span per request and
// a client span per upstream attempt, exported over OTLP/HTTP.
type Tracing struct {
	// OTLPEndpoint is the OTLP/HTTP collector's host:port (traces are
	// POSTed to /v1/traces over plain HTTP). Required.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// ServiceName is the service.name resource attribute. Default:
	// candor.
	ServiceName string `yaml:"service_name"`
	// Sample is the fraction of new traces sampled, 0 to 1; a trusted
	// incoming traceparent's sampled flag is honoured. Default: 1.
	Sample *float64 `yaml:"sample"`
	// TrustTraceparent lists client networks (CIDR) whose W3C traceparent
	// is continued; from anyone else it is replaced. Default: none.
	TrustTraceparent []string `yaml:"trust_traceparent"`
}

// Protocol names the HTTP version spoken to an upstream's targets.
type Protocol string

// The protocols.
const (
	ProtocolHTTP1 Protocol = "http1"
	ProtocolH2    Protocol = "h2"
)

// Server is the downstream server's limits and timeouts. Every request
// beyond a limit is refused with its own cause (request_line_too_long,
// request_header_too_large, request_timeout...) before anything reaches an
// upstream.
type Server struct {
	// MaxRequestLine bounds the request line (method, target, version):
	// longer is answered 414. Default: 8KiB.
	MaxRequestLine Size `yaml:"max_request_line"`
	// MaxHeaderBytes bounds the header section (the fields, without the
	// request line): larger is answered 431. Default: 32KiB.
	MaxHeaderBytes Size `yaml:"max_header_bytes"`
	// MaxHeaderFields bounds the number of header fields: more is
	// answered 431. Default: 100.
	MaxHeaderFields int `yaml:"max_header_fields"`
	// ReadHeaderTimeout bounds the time from a request's first byte to the
	// end of its head: a slower client is answered 408 and closed.
	// Default: 10s.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// BodyTimeout bounds the wait for each piece of a request body: a
	// client that stops sending for longer is answered 408 (or cut off,
	// when the response has begun). Default: 30s.
	BodyTimeout Duration `yaml:"body_timeout"`
	// WriteTimeout bounds the wait for a client to take each piece of a
	// response: a client that stops reading for longer is cut off.
	// Default: 30s.
	WriteTimeout Duration `yaml:"write_timeout"`
	// IdleTimeout bounds an idle keep-alive connection between requests.
	// Default: 75s.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxConnections bounds the client connections open at once, over
	// all listeners; beyond it new connections wait in the kernel's
	// accept queue. Default: 20000.
	MaxConnections int `yaml:"max_connections"`
	// H2C accepts cleartext HTTP/2 with prior knowledge (the HTTP/2
	// connection preface) on the listen address. Default: false.
	H2C bool `yaml:"h2c"`
}

// ListenTLS is the TLS listener.
type ListenTLS struct {
	// Listen is the TLS listener's address, host:port. Required.
	Listen string `yaml:"listen"`
	// Certificates are the certificate chains served; the one whose names
	// match the client's SNI is chosen, the first when none matches (or
	// there is no SNI). At least one. Files are read again on every
	// reload.
	Certificates []Certificate `yaml:"certificates"`
	// MinVersion is the lowest TLS version accepted: "1.2" or "1.3".
	// Default: "1.2".
	MinVersion string `yaml:"min_version"`
	// HTTP2 offers HTTP/2 through ALPN. Default: true. [Parse] and
	// [Config.ApplyDefaults] leave it non-nil.
	HTTP2 *bool `yaml:"http2"`
}

// Certificate is a PEM certificate chain and its private key, as files
// (relative paths are relative to the configuration's folder).
type Certificate struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}
