package config

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// built returns a valid configuration as code would build it, before
// defaults.
func built() *Config {
	return &Config{
		File:   "built",
		Routes: []Route{{Name: "api", Upstream: "api", Line: 3}},
		Upstreams: map[string]*Upstream{
			"api": {
				Name:    "api",
				Line:    7,
				Targets: []Target{{URL: "http://10.0.0.1:8080", Line: 9}},
			},
		},
	}
}

func TestApplyDefaults(t *testing.T) {
	tests := []struct {
		name   string
		modify func(c *Config)
		want   func(c *Config)
	}{
		{
			name: "zero values get defaults",
			modify: func(c *Config) {
				c.Routes[0].Strict = &Strict{}
				c.Routes[0].Upgrade = &Upgrade{Protocols: []string{"websocket"}}
				c.Admin = &Admin{Listen: "127.0.0.1:9090"}
				c.Tracing = &Tracing{OTLPEndpoint: "127.0.0.1:4318"}
			},
			want: func(c *Config) {
				c.Listen = "127.0.0.1:8080"
				c.Admin.Failures = 100
				c.Log = Log{Level: "info", Output: "stderr", Sample: new(1.0)}
				c.Tracing = &Tracing{OTLPEndpoint: "127.0.0.1:4318", ServiceName: "candor", Sample: new(1.0)}
				c.DrainTimeout = Duration(30 * time.Second)
				c.Watch = new(true)
				c.Routes[0].Strict = &Strict{Buffer: 1 << 20, Validate: ValidateNone}
				c.Routes[0].Upgrade = &Upgrade{Protocols: []string{"websocket"}, Idle: Duration(10 * time.Minute)}
				c.Server = Server{
					MaxRequestLine:    8 << 10,
					MaxHeaderBytes:    32 << 10,
					MaxHeaderFields:   100,
					ReadHeaderTimeout: Duration(10 * time.Second),
					BodyTimeout:       Duration(30 * time.Second),
					WriteTimeout:      Duration(30 * time.Second),
					IdleTimeout:       Duration(75 * time.Second),
					MaxConnections:    20000,
				}
				c.Routes[0].MaxBody = 64 << 20
				u := c.Upstreams["api"]
				u.Protocol = "http1"
				u.Timeouts = Timeouts{
					Connect:        Duration(2 * time.Second),
					ResponseHeader: Duration(30 * time.Second),
					Idle:           Duration(60 * time.Second),
					PoolIdle:       Duration(4 * time.Second),
				}
				u.ResponseHeadLimit = 64 << 10
				u.MaxIdlePerTarget = 64
				c.Routes[0].Retry = retryDefaults()
				u.Targets[0].Weight = 1
				u.Balance = roundRobin
				u.Health.Passive = passiveDefaults()
				u.Limits = limitsDefaults()
			},
		},
		{
			name: "active checks and consistent_hash get defaults when present",
			modify: func(c *Config) {
				u := c.Upstreams["api"]
				u.Balance = Balance{Policy: PolicyConsistentHash, HashOn: "header:X-User"}
				u.Health.Active = &ActiveHealth{Path: "/healthz"}
			},
			want: func(c *Config) {
				c.Listen = "127.0.0.1:8080"
				c.Log = logDefaults()
				c.DrainTimeout = DefaultDrainTimeout
				c.Watch = new(DefaultWatch)
				c.Routes[0].Retry = retryDefaults()
				u := c.Upstreams["api"]
				u.Timeouts = timeouts()
				u.ResponseHeadLimit = 64 << 10
				u.MaxIdlePerTarget = 64
				u.Targets[0].Weight = 1
				u.Balance.HashLoadFactor = 1.25
				u.Health = Health{
					Active: &ActiveHealth{
						Path:               "/healthz",
						Interval:           Duration(5 * time.Second),
						Timeout:            Duration(2 * time.Second),
						Expect:             "200-399",
						HealthyThreshold:   2,
						UnhealthyThreshold: 3,
					},
					Passive: passiveDefaults(),
				}
				u.Limits = limitsDefaults()
			},
		},
		{
			name: "set values are kept",
			modify: func(c *Config) {
				c.Listen = ":1"
				c.Admin = &Admin{Listen: ":2", Token: "0123456789abcdef", Failures: 1}
				c.Log = Log{Level: "debug", Access: true, Output: "stdout", Sample: new(0.0), Query: true}
				c.Tracing = &Tracing{OTLPEndpoint: "h:1", ServiceName: "s", Sample: new(0.0), TrustTraceparent: []string{"::/0"}}
				c.DrainTimeout = 1
				c.Watch = new(false)
				c.Routes[0].Strict = &Strict{Buffer: 5, Validate: ValidateJSON}
				c.Routes[0].Upgrade = &Upgrade{Protocols: []string{"WebSocket"}, Idle: 2}
				u := c.Upstreams["api"]
				u.Timeouts = Timeouts{Connect: 1, ResponseHeader: 2, Idle: 3, PoolIdle: 4}
				u.ResponseHeadLimit = 2048
				u.MaxIdlePerTarget = 1
				u.Targets[0].Weight = 7
				u.Balance = Balance{Policy: PolicyLeastRequest}
				u.Health = Health{
					Active:  &ActiveHealth{Path: "/", Interval: 1, Timeout: 2, Expect: "204", HealthyThreshold: 3, UnhealthyThreshold: 4},
					Passive: PassiveHealth{ConsecutiveFailures: 1, BaseEjection: 2, MaxEjection: 3, MaxEjectedPercent: 4, Count5xx: true},
				}
				u.Limits = Limits{MaxConcurrent: 1, MaxPending: 2, PendingTimeout: 3, TargetMaxConcurrent: 4}
				c.Routes[0].Retry = Retry{
					Attempts: 1, PerTryTimeout: 2, Timeout: 3, Backoff: 4, MaxBackoff: 5,
					OnStatus: []int{503}, BodyBuffer: 6, BudgetRatio: 0.5, BudgetMinPerSecond: 7,
				}
			},
			want: func(c *Config) {},
		},
		{
			name:   "nil upstream is skipped",
			modify: func(c *Config) { c.Upstreams["nil"] = nil },
			want: func(c *Config) {
				c.Listen = "127.0.0.1:8080"
				c.Log = logDefaults()
				c.DrainTimeout = DefaultDrainTimeout
				c.Watch = new(DefaultWatch)
				u := c.Upstreams["api"]
				u.Timeouts = Timeouts{Connect: DefaultConnect, ResponseHeader: DefaultResponseHeader, Idle: DefaultIdle, PoolIdle: DefaultPoolIdle}
				u.ResponseHeadLimit = 64 << 10
				u.MaxIdlePerTarget = 64
				c.Routes[0].Retry = retryDefaults()
				u.Targets[0].Weight = 1
				u.Balance = roundRobin
				u.Health.Passive = passiveDefaults()
				u.Limits = limitsDefaults()
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := built()
			tt.modify(got)
			want := built()
			tt.modify(want)
			tt.want(want)
			serverKeyDefaults(want)
			got.ApplyDefaults()
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ApplyDefaults mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	writeCA(t, ca)
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	fe := func(line int, field, reason string) *FieldError {
		return &FieldError{File: "built", Line: line, Field: field, Reason: reason}
	}
	api := func(c *Config) *Upstream { return c.Upstreams["api"] }
	tests := []struct {
		name   string
		modify func(c *Config)
		want   *Errors // nil: valid
	}{
		{name: "valid", modify: func(c *Config) {}},
		{
			name: "valid with everything",
			modify: func(c *Config) {
				c.Admin = &Admin{Listen: "localhost:0", Failures: 1}
				c.Routes[0].Match = Match{Host: "a.example", PathPrefix: "/x/"}
				c.Routes[0].Strict = &Strict{Buffer: 1 << 30, Validate: ValidateJSON}
				u := api(c)
				u.Targets = append(u.Targets, Target{URL: "https://[::1]:8443", Weight: 1000})
				u.TLS = &TLS{CAFile: ca, ServerName: "10.0.0.1"}
				u.Resolver = "[::1]:53"
				u.Timeouts.Idle = Duration(24 * time.Hour)
				u.ResponseHeadLimit = 1 << 10
				u.MaxIdlePerTarget = 100000
			},
		},
		{
			name: "zero targets",
			modify: func(c *Config) {
				api(c).Targets = nil
			},
		},
		{
			name: "not defaulted",
			modify: func(c *Config) {
				c.Listen, c.Log.Level, c.Log.Output = "", "", ""
				c.Admin = &Admin{Listen: "127.0.0.1:9090"}
				c.Tracing = &Tracing{}
				c.DrainTimeout = 0
				c.Routes[0].Strict = &Strict{}
				c.Routes[0].Upgrade = &Upgrade{}
				api(c).Timeouts = Timeouts{}
				api(c).ResponseHeadLimit = 0
			},
			want: &Errors{
				fe(0, "listen", `"" is not host:port (missing port in address)`),
				fe(0, "admin.failures", "must be between 1 and 10000, got 0"),
				fe(0, "log.level", `must be debug, info, warn or error, got ""`),
				fe(0, "log.output", `must be stderr, stdout or a file path, got ""`),
				fe(0, "drain_timeout", "must be greater than 0, got 0s"),
				fe(0, "tracing.otlp_endpoint", "required when tracing is present: the OTLP/HTTP collector's host:port, e.g. 127.0.0.1:4318"),
				fe(0, "tracing.service_name", "must not be empty (leave the key out for the default, candor)"),
				fe(3, "routes[0].strict.validate", `must be none or json, got ""`),
				fe(3, "routes[0].strict.buffer", "must be between 1 byte and 1GiB, got 0"),
				fe(3, "routes[0].upgrade.protocols", "required when upgrade is present, e.g. [websocket]"),
				fe(3, "routes[0].upgrade.idle", "must be greater than 0, got 0s"),
				fe(7, "upstreams.api.timeouts.connect", "must be greater than 0, got 0s"),
				fe(7, "upstreams.api.timeouts.response_header", "must be greater than 0, got 0s"),
				fe(7, "upstreams.api.timeouts.idle", "must be greater than 0, got 0s"),
				fe(7, "upstreams.api.timeouts.pool_idle", "must be greater than 0, got 0s"),
				fe(7, "upstreams.api.response_head_limit", "must be between 1KiB and 1MiB, got 0"),
			},
		},
		{
			name: "admin without listen",
			modify: func(c *Config) {
				c.Admin = &Admin{}
			},
			want: &Errors{
				fe(0, "admin.listen", "required when admin is present"),
				fe(0, "admin.failures", "must be between 1 and 10000, got 0"),
			},
		},
		{
			name: "valid with every admin, log and tracing key",
			modify: func(c *Config) {
				c.Admin = &Admin{Listen: ":9090", Token: "!#$%&'*+-./0123456789:;<=>?@AZ[\\]^_`az{|}~\"", Failures: 10000}
				c.Log = Log{Level: "error", Access: true, Output: filepath.Join(dir, "candor.log"), Sample: new(0.0), Query: true}
				c.Tracing = &Tracing{
					OTLPEndpoint:     "[::1]:65535",
					ServiceName:      strings.Repeat("a", 255),
					Sample:           new(1.0),
					TrustTraceparent: []string{"0.0.0.0/0", "::/0", "10.0.0.0/8", "10.0.0.0/16", "10.0.0.1/32", "::ffff:10.0.0.0/104"},
				}
			},
		},
		{
			name: "log to an existing file, and nil samples mean 1",
			modify: func(c *Config) {
				c.Log.Output = notPEM
				c.Log.Sample = nil
				c.Tracing = &Tracing{OTLPEndpoint: "collector.internal:4318", ServiceName: "candor"}
			},
		},
		{
			name: "admin off loopback needs a token",
			modify: func(c *Config) {
				c.Admin = &Admin{Listen: "0.0.0.0:9090", Failures: 10001}
			},
			want: &Errors{
				fe(0, "admin.token", "admin on a non-loopback address needs a token"),
				fe(0, "admin.failures", "must be between 1 and 10000, got 10001"),
			},
		},
		{
			name: "an invalid admin listen is not also missing a token",
			modify: func(c *Config) {
				c.Admin = &Admin{Listen: "0.0.0.0", Failures: 1}
			},
			want: &Errors{fe(0, "admin.listen", `"0.0.0.0" is not host:port (missing port in address)`)},
		},
		{
			name: "admin token problems",
			modify: func(c *Config) {
				c.Admin = &Admin{Listen: "127.0.0.1:9090", Token: "0123456789abcde", Failures: -1}
			},
			want: &Errors{
				fe(0, "admin.token", "must be at least 16 characters, got 15"),
				fe(0, "admin.failures", "must be between 1 and 10000, got -1"),
			},
		},
		{
			name: "log problems",
			modify: func(c *Config) {
				c.Log.Output = filepath.Join(dir, "missing", "candor.log")
				c.Log.Sample = new(math.NaN())
			},
			want: &Errors{
				fe(0, "log.output", `folder "`+filepath.Join(dir, "missing")+`" does not exist`),
				fe(0, "log.sample", "must be between 0 and 1, got NaN"),
			},
		},
		{
			name: "log output is a folder",
			modify: func(c *Config) {
				c.Log.Output = dir
				c.Log.Sample = new(-0.5)
			},
			want: &Errors{
				fe(0, "log.output", `"`+dir+`" is a folder: name a file`),
				fe(0, "log.sample", "must be between 0 and 1, got -0.5"),
			},
		},
		{
			name: "log output under a file",
			modify: func(c *Config) {
				c.Log.Output = filepath.Join(notPEM, "candor.log")
			},
			want: &Errors{fe(0, "log.output", `"`+notPEM+`" is not a folder`)},
		},
		{
			name: "log output with a NUL",
			modify: func(c *Config) {
				c.Log.Output = "candor\x00.log"
			},
			want: &Errors{fe(0, "log.output", `"candor\x00.log" is not a valid file path`)},
		},
		{
			name: "tracing problems",
			modify: func(c *Config) {
				c.Tracing = &Tracing{
					OTLPEndpoint: "collector.internal:http",
					ServiceName:  strings.Repeat("a", 256),
					Sample:       new(math.Inf(1)),
					TrustTraceparent: []string{
						"10.0.0.0/8", "", "10.0.0.0/8", "fe80::1%eth0", "10.0.0.0/8/8",
						"::ffff:10.0.0.0/8", "2001:db8::1/32", "10.0.0.0/08", "*",
					},
				}
			},
			want: &Errors{
				fe(0, "tracing.otlp_endpoint", `port "http" is not a number`),
				fe(0, "tracing.service_name", "is 256 characters long: use 1 to 255 letters, digits, '.', '_' or '-'"),
				fe(0, "tracing.sample", "must be between 0 and 1, got +Inf"),
				fe(0, "tracing.trust_traceparent[1]", `"" is not a CIDR network such as 10.0.0.0/8 or 2001:db8::/32`),
				fe(0, "tracing.trust_traceparent[2]", "duplicate network 10.0.0.0/8 (same as tracing.trust_traceparent[0])"),
				fe(0, "tracing.trust_traceparent[3]", `"fe80::1%eth0" is an address, not a network: write fe80::1/128 for it alone`),
				fe(0, "tracing.trust_traceparent[4]", `"10.0.0.0/8/8" is not a CIDR network such as 10.0.0.0/8 or 2001:db8::/32`),
				fe(0, "tracing.trust_traceparent[5]", `"::ffff:10.0.0.0/8" has host bits set: write ::/8 for the network, or ::ffff:10.0.0.0/128 for the address alone`),
				fe(0, "tracing.trust_traceparent[6]", `"2001:db8::1/32" has host bits set: write 2001:db8::/32 for the network, or 2001:db8::1/128 for the address alone`),
				fe(0, "tracing.trust_traceparent[7]", `"10.0.0.0/08" is not a CIDR network such as 10.0.0.0/8 or 2001:db8::/32`),
				fe(0, "tracing.trust_traceparent[8]", `"*" is not a CIDR network such as 10.0.0.0/8 or 2001:db8::/32`),
			},
		},
		{
			name: "tracing endpoint forms",
			modify: func(c *Config) {
				c.Tracing = &Tracing{OTLPEndpoint: "collector:4318/v1/traces", ServiceName: "candor edge"}
			},
			want: &Errors{
				fe(0, "tracing.otlp_endpoint", `"collector:4318/v1/traces" is not host:port: write the collector's host:port without scheme or path, e.g. 127.0.0.1:4318 (traces are POSTed to http://HOST:PORT/v1/traces)`),
				fe(0, "tracing.service_name", `invalid service name "candor edge": use 1 to 255 letters, digits, '.', '_' or '-'`),
			},
		},
		{
			name: "tracing endpoint host",
			modify: func(c *Config) {
				c.Tracing = &Tracing{OTLPEndpoint: "-collector-:4318", ServiceName: "candor"}
			},
			want: &Errors{fe(0, "tracing.otlp_endpoint", `host "-collector-" is not an IP address or host name`)},
		},
		{
			name: "no routes",
			modify: func(c *Config) {
				c.Routes = nil
			},
			want: &Errors{fe(0, "routes", "at least one route is required")},
		},
		{
			name: "name too long",
			modify: func(c *Config) {
				c.Routes[0].Name = "a1234567890123456789012345678901234567890123456789012345678901234"
			},
			want: &Errors{fe(3, "routes[0].name", `invalid route name "a1234567890123456789012345678901234567890123456789012345678901234": `+nameRule)},
		},
		{
			name: "nil upstream",
			modify: func(c *Config) {
				c.Upstreams["gone"] = nil
			},
			want: &Errors{fe(0, "upstreams.gone", "must not be nil")},
		},
		{
			name: "tls problems",
			modify: func(c *Config) {
				api(c).TLS = &TLS{CAFile: notPEM, ServerName: "-bad-"}
			},
			want: &Errors{
				fe(7, "upstreams.api.tls", "tls set but no https target"),
				fe(7, "upstreams.api.tls.ca_file", `"`+notPEM+`" holds no PEM certificate`),
				fe(7, "upstreams.api.tls.server_name", `"-bad-" is not a valid DNS name or IP address`),
			},
		},
		{
			name: "limits",
			modify: func(c *Config) {
				u := api(c)
				u.Timeouts.Idle = Duration(24*time.Hour + 1)
				u.Timeouts.Connect = -1
				u.ResponseHeadLimit = 1<<20 + 1
				u.MaxIdlePerTarget = -1
				u.Resolver = "10.0.0.53:0"
			},
			want: &Errors{
				fe(7, "upstreams.api.resolver", "port 0 out of range (1-65535)"),
				fe(7, "upstreams.api.timeouts.connect", "must be greater than 0, got -1ns"),
				fe(7, "upstreams.api.timeouts.idle", "must be at most 24h, got 24h0m0.000000001s"),
				fe(7, "upstreams.api.response_head_limit", "must be between 1KiB and 1MiB, got 1048577"),
				fe(7, "upstreams.api.max_idle_per_target", "must be between 0 and 100000, got -1"),
			},
		},
		{
			name: "target problems",
			modify: func(c *Config) {
				api(c).Targets = []Target{
					target("", 9),
					target("http://a.example:", 10),
					target("http:a.example", 11),
					target("//a.example", 12),
					target("http://a.example/?", 13),
					target("http://256.1.1.1", 14),
					target("https://a.example", 15),
					target("HTTPS://A.EXAMPLE:443/", 16),
				}
			},
			want: &Errors{
				fe(9, "upstreams.api.targets[0].url", "required"),
				fe(10, "upstreams.api.targets[1].url", "empty port: write http://host[:port] or https://host[:port]"),
				fe(11, "upstreams.api.targets[2].url", `missing "//" after the scheme: write http://host[:port] or https://host[:port]`),
				fe(12, "upstreams.api.targets[3].url", "missing scheme: write http://host[:port] or https://host[:port]"),
				fe(13, "upstreams.api.targets[4].url", "must not have a query"),
				fe(14, "upstreams.api.targets[5].url", `host "256.1.1.1" is not a valid host name or IP address`),
				fe(16, "upstreams.api.targets[7].url", "duplicate target (same as upstreams.api.targets[6])"),
			},
		},
		{
			name: "valid with every balancing, health, limit and retry key",
			modify: func(c *Config) {
				u := api(c)
				u.Targets[0].Weight = 1000
				u.Balance = Balance{Policy: PolicyConsistentHash, HashOn: "cookie:__Host-id", HashLoadFactor: 1}
				u.Health = Health{
					Active: &ActiveHealth{
						Path: "/h?x=1", Host: "[::1]", Interval: Duration(time.Hour), Timeout: Duration(time.Hour - 1),
						Expect: "599", HealthyThreshold: 100, UnhealthyThreshold: 1,
					},
					Passive: PassiveHealth{BaseEjection: Duration(24 * time.Hour), MaxEjection: Duration(24 * time.Hour), MaxEjectedPercent: 100},
				}
				u.Limits = Limits{MaxConcurrent: 1, MaxPending: 1 << 30, PendingTimeout: Duration(time.Minute)}
				c.Routes[0].Retry = Retry{
					Attempts: 10, PerTryTimeout: 1, Backoff: Duration(time.Minute), MaxBackoff: Duration(time.Minute),
					OnStatus: []int{500, 599}, BodyBuffer: 64 << 20, BudgetRatio: 1, BudgetMinPerSecond: 10000,
				}
			},
		},
		{
			name: "balancing, health, limits and retries not defaulted",
			modify: func(c *Config) {
				u := api(c)
				u.Targets[0].Weight = 0
				u.Balance = Balance{}
				u.Health = Health{Active: &ActiveHealth{}}
				u.Limits = Limits{}
				c.Routes[0].Retry = Retry{}
			},
			want: &Errors{
				fe(3, "routes[0].retry.attempts", "must be between 1 and 10 (1 turns retries off), got 0"),
				fe(3, "routes[0].retry.backoff", "must be greater than 0, got 0s"),
				fe(3, "routes[0].retry.max_backoff", "must be greater than 0, got 0s"),
				fe(7, "upstreams.api.balance.policy", `must be round_robin, least_request or consistent_hash, got ""`),
				fe(7, "upstreams.api.health.active.path", "required when active is present, e.g. /healthz"),
				fe(7, "upstreams.api.health.active.interval", "must be between 100ms and 1h, got 0s"),
				fe(7, "upstreams.api.health.active.timeout", "must be greater than 0, got 0s"),
				fe(7, "upstreams.api.health.active.expect", `must be a status such as "204" or a range such as "200-399", got ""`),
				fe(7, "upstreams.api.health.active.healthy_threshold", "must be between 1 and 100, got 0"),
				fe(7, "upstreams.api.health.active.unhealthy_threshold", "must be between 1 and 100, got 0"),
				fe(7, "upstreams.api.health.passive.base_ejection", "must be greater than 0, got 0s"),
				fe(7, "upstreams.api.health.passive.max_ejection", "must be greater than 0, got 0s"),
				fe(7, "upstreams.api.limits.pending_timeout", "must be greater than 0, got 0s"),
				fe(9, "upstreams.api.targets[0].weight", "must be between 1 and 1000, got 0"),
			},
		},
		{
			name: "balancing, health, limit and retry ranges",
			modify: func(c *Config) {
				u := api(c)
				u.Targets[0].Weight = -1
				u.Balance = Balance{Policy: PolicyConsistentHash, HashOn: "header:X-User", HashLoadFactor: math.NaN()}
				u.Health = Health{
					Active: &ActiveHealth{
						Path: "/ü", Host: "[10.0.0.1]:80", Interval: Duration(time.Hour + 1), Timeout: -1,
						Expect: "099-200", HealthyThreshold: 101, UnhealthyThreshold: -1,
					},
					Passive: PassiveHealth{ConsecutiveFailures: -1, BaseEjection: -1, MaxEjection: Duration(24*time.Hour + 1), MaxEjectedPercent: -1},
				}
				u.Limits = Limits{MaxConcurrent: -1, MaxPending: -1, PendingTimeout: Duration(time.Minute + 1), TargetMaxConcurrent: -1}
				c.Routes[0].Retry = Retry{
					Attempts: -1, PerTryTimeout: -1, Timeout: -1, Backoff: -1, MaxBackoff: Duration(time.Minute + 1),
					OnStatus: []int{0, 404, 600}, BodyBuffer: -1, BudgetRatio: math.Inf(1), BudgetMinPerSecond: -1,
				}
			},
			want: &Errors{
				fe(3, "routes[0].retry.attempts", "must be between 1 and 10 (1 turns retries off), got -1"),
				fe(3, "routes[0].retry.per_try_timeout", "must not be negative, got -1ns"),
				fe(3, "routes[0].retry.timeout", "must not be negative, got -1ns"),
				fe(3, "routes[0].retry.backoff", "must be greater than 0, got -1ns"),
				fe(3, "routes[0].retry.max_backoff", "must be at most 1m, got 1m0.000000001s"),
				fe(3, "routes[0].retry.on_status[0]", "must be a 5xx status (500-599), got 0"),
				fe(3, "routes[0].retry.on_status[1]", "404 is not retried: only 5xx statuses (500-599) are; a 4xx answers the request itself and would fail again on another target"),
				fe(3, "routes[0].retry.on_status[2]", "must be a 5xx status (500-599), got 600"),
				fe(3, "routes[0].retry.body_buffer", "must be between 0 and 64MiB, got -1"),
				fe(3, "routes[0].retry.budget_ratio", "must be between 0 and 1, got +Inf"),
				fe(3, "routes[0].retry.budget_min_per_second", "must be between 0 and 10000, got -1"),
				fe(7, "upstreams.api.balance.hash_load_factor", "must be between 1 and 10, got NaN"),
				fe(7, "upstreams.api.health.active.path", `must be ASCII (percent-encode other characters), got "/ü"`),
				fe(7, "upstreams.api.health.active.host", `"[10.0.0.1]" is not an IPv6 address in brackets; write host or host:port (an IPv6 address in brackets: [::1]:8080)`),
				fe(7, "upstreams.api.health.active.interval", "must be between 100ms and 1h, got 1h0m0.000000001s"),
				fe(7, "upstreams.api.health.active.timeout", "must be greater than 0, got -1ns"),
				fe(7, "upstreams.api.health.active.expect", `statuses must be between 100 and 599, got "099-200"`),
				fe(7, "upstreams.api.health.active.healthy_threshold", "must be between 1 and 100, got 101"),
				fe(7, "upstreams.api.health.active.unhealthy_threshold", "must be between 1 and 100, got -1"),
				fe(7, "upstreams.api.health.passive.consecutive_failures", "must be between 0 (off) and 1000, got -1"),
				fe(7, "upstreams.api.health.passive.base_ejection", "must be greater than 0, got -1ns"),
				fe(7, "upstreams.api.health.passive.max_ejection", "must be at most 24h, got 24h0m0.000000001s"),
				fe(7, "upstreams.api.health.passive.max_ejected_percent", "must be between 0 and 100, got -1"),
				fe(7, "upstreams.api.limits.max_concurrent", "must not be negative (0 means no limit), got -1"),
				fe(7, "upstreams.api.limits.max_pending", "must not be negative (0 means no limit), got -1"),
				fe(7, "upstreams.api.limits.target_max_concurrent", "must not be negative (0 means no limit), got -1"),
				fe(7, "upstreams.api.limits.pending_timeout", "must be at most 1m, got 1m0.000000001s"),
				fe(9, "upstreams.api.targets[0].weight", "must be between 1 and 1000, got -1"),
			},
		},
		{
			name: "keys that depend on others",
			modify: func(c *Config) {
				u := api(c)
				u.Balance = Balance{Policy: PolicyRoundRobin, HashOn: "header:X", HashLoadFactor: 2}
				u.Health = Health{
					Active:  &ActiveHealth{Path: "/", Interval: Duration(time.Second), Timeout: Duration(time.Second), Expect: "200", HealthyThreshold: 1, UnhealthyThreshold: 1},
					Passive: PassiveHealth{BaseEjection: Duration(time.Minute), MaxEjection: Duration(time.Second)},
				}
				u.Limits = Limits{MaxPending: 1, PendingTimeout: Duration(time.Second)}
				c.Routes[0].Retry = Retry{
					Attempts: 2, PerTryTimeout: Duration(time.Second), Timeout: Duration(time.Second),
					Backoff: Duration(time.Second), MaxBackoff: Duration(time.Millisecond),
					OnStatus: []int{503, 502, 503},
				}
			},
			want: &Errors{
				fe(3, "routes[0].retry.timeout", "must be greater than per_try_timeout (1s), got 1s"),
				fe(3, "routes[0].retry.max_backoff", "must be at least backoff (1s), got 1ms"),
				fe(3, "routes[0].retry.on_status[2]", "duplicate status 503 (same as routes[0].retry.on_status[0])"),
				fe(7, "upstreams.api.balance.hash_on", "only used by policy consistent_hash, not round_robin"),
				fe(7, "upstreams.api.balance.hash_load_factor", "only used by policy consistent_hash, not round_robin"),
				fe(7, "upstreams.api.health.active.timeout", "must be less than interval (1s), got 1s"),
				fe(7, "upstreams.api.health.passive.max_ejection", "must be at least base_ejection (1m0s), got 1s"),
				fe(7, "upstreams.api.limits.max_pending", "requires max_concurrent: requests wait only for a concurrency limit"),
			},
		},
		{
			name: "valid with every drain, maintenance and upgrade key",
			modify: func(c *Config) {
				c.DrainTimeout = Duration(10 * time.Minute)
				c.Watch = new(false)
				c.Routes[0].Maintenance = true
				c.Routes[0].Upgrade = &Upgrade{Protocols: []string{"WebSocket", "x-Custom_1.0!"}, Idle: Duration(24 * time.Hour)}
				api(c).Targets[0].Drain = true
			},
		},
		{
			name: "drain and upgrade ranges",
			modify: func(c *Config) {
				c.DrainTimeout = Duration(10*time.Minute + 1)
				c.Routes[0].Upgrade = &Upgrade{
					Protocols: []string{"WebSocket", "websocket", "H2C", "websocket/13", ""},
					Idle:      Duration(24*time.Hour + 1),
				}
				c.Routes = append(c.Routes, Route{Name: "b", Upstream: "api", Upgrade: &Upgrade{Protocols: []string{}, Idle: -1}, Retry: retryDefaults(), Line: 5})
			},
			want: &Errors{
				fe(0, "drain_timeout", "must be at most 10m, got 10m0.000000001s"),
				fe(3, "routes[0].upgrade.protocols[1]", `duplicate protocol "websocket" (same as routes[0].upgrade.protocols[0])`),
				fe(3, "routes[0].upgrade.protocols[2]", "h2c is never forwarded"),
				fe(3, "routes[0].upgrade.protocols[3]", "\"websocket/13\" is not a valid protocol: write its name only, a token of letters, digits and !#$%&'*+-.^_`|~"),
				fe(3, "routes[0].upgrade.protocols[4]", "\"\" is not a valid protocol: write its name only, a token of letters, digits and !#$%&'*+-.^_`|~"),
				fe(3, "routes[0].upgrade.idle", "must be at most 24h, got 24h0m0.000000001s"),
				fe(5, "routes[1].upgrade.protocols", "required when upgrade is present, e.g. [websocket]"),
				fe(5, "routes[1].upgrade.idle", "must be greater than 0, got -1ns"),
			},
		},
		{
			name: "consistent_hash without a key",
			modify: func(c *Config) {
				api(c).Balance = Balance{Policy: PolicyConsistentHash}
			},
			want: &Errors{
				fe(7, "upstreams.api.balance.hash_on", "required for policy consistent_hash: write header:NAME or cookie:NAME"),
				fe(7, "upstreams.api.balance.hash_load_factor", "must be between 1 and 10, got 0"),
			},
		},
		{
			name: "an unknown policy does not make hash keys misplaced",
			modify: func(c *Config) {
				api(c).Balance = Balance{Policy: "consistent-hash", HashOn: "header:X", HashLoadFactor: 2}
			},
			want: &Errors{
				fe(7, "upstreams.api.balance.policy", `must be round_robin, least_request or consistent_hash, got "consistent-hash"`),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := built()
			c.ApplyDefaults()
			tt.modify(c)
			err := c.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			got, ok := errors.AsType[*Errors](err)
			if !ok {
				t.Fatalf("Validate error = %v (%T), want *Errors", err, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidHostname(t *testing.T) {
	tests := []struct {
		name string
		host string
		want bool
	}{
		{name: "simple", host: "localhost", want: true},
		{name: "dotted", host: "api.example.com", want: true},
		{name: "digits and hyphens", host: "a-1.b2", want: true},
		{name: "underscore", host: "my_service", want: true},
		{name: "upper case", host: "API.Example.COM", want: true},
		{name: "empty", host: ""},
		{name: "trailing dot", host: "example.com."},
		{name: "empty label", host: "a..b"},
		{name: "leading hyphen", host: "-a"},
		{name: "trailing hyphen", host: "a-"},
		{name: "space", host: "a b"},
		{name: "port", host: "a:80"},
		{name: "numeric last label", host: "1.2.3.256"},
		{name: "long label", host: "a123456789012345678901234567890123456789012345678901234567890123"},
		{name: "max label", host: "a12345678901234567890123456789012345678901234567890123456789012", want: true},
		{name: "wildcard", host: "*.example.com"},
		{name: "unicode", host: "bücher.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := validHostname(tt.host); got != tt.want {
				t.Errorf("validHostname(%q) = %v, want %v", tt.host, got, tt.want)
			}
		})
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{name: "letters", in: "api", want: true},
		{name: "all allowed", in: "A9._-z", want: true},
		{name: "digit first", in: "9lives", want: true},
		{name: "64 chars", in: "a123456789012345678901234567890123456789012345678901234567890123", want: true},
		{name: "65 chars", in: "a1234567890123456789012345678901234567890123456789012345678901234"},
		{name: "empty", in: ""},
		{name: "dot first", in: ".a"},
		{name: "hyphen first", in: "-a"},
		{name: "space", in: "a b"},
		{name: "slash", in: "a/b"},
		{name: "non-ASCII", in: "é"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := validName(tt.in); got != tt.want {
				t.Errorf("validName(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

// serverKeyDefaults sets, where they are zero, the defaults of the keys added
// with candor's own downstream server (server, routes[].max_body,
// upstreams.*.protocol), so that expectations written before those keys
// existed still say everything else; TestApplyDefaults' first case and
// server_test.go check those defaults themselves.
func serverKeyDefaults(c *Config) {
	if c.Server == (Server{}) {
		c.Server = Server{
			MaxRequestLine:    DefaultMaxRequestLine,
			MaxHeaderBytes:    DefaultMaxHeaderBytes,
			MaxHeaderFields:   DefaultMaxHeaderFields,
			ReadHeaderTimeout: DefaultReadHeaderTimeout,
			BodyTimeout:       DefaultBodyTimeout,
			WriteTimeout:      DefaultWriteTimeout,
			IdleTimeout:       DefaultServerIdleTimeout,
			MaxConnections:    DefaultMaxConnections,
		}
	}
	for i := range c.Routes {
		if c.Routes[i].MaxBody == 0 {
			c.Routes[i].MaxBody = DefaultMaxBody
		}
	}
	for _, u := range c.Upstreams {
		if u != nil && u.Protocol == "" {
			u.Protocol = DefaultProtocol
		}
	}
}
