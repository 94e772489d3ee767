package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.yaml.in/yaml/v3"
)

// errLine is the form of every line of a configuration error.
var errLine = regexp.MustCompile(`^[^:]+:\d+: `)

// validFiles returns the configuration files that must parse.
func validFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "valid", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no valid testdata: %v", err)
	}
	return append(files, filepath.Join("testdata", "full.yaml"))
}

// invalidFiles returns the configuration files that must fail.
func invalidFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "invalid", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no invalid testdata: %v", err)
	}
	return files
}

// abs returns the absolute form of a path relative to the package folder.
func abs(t *testing.T, path string) string {
	t.Helper()
	a, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestLoadValid(t *testing.T) {
	for _, file := range validFiles(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			c, err := Load(file)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if c.File != abs(t, file) {
				t.Errorf("File = %q, want %q", c.File, abs(t, file))
			}
			if err := c.Validate(); err != nil {
				t.Errorf("Validate after Load: %v", err)
			}
		})
	}
}

// timeouts returns the default timeouts.
func timeouts() Timeouts {
	return Timeouts{
		Connect:        DefaultConnect,
		ResponseHeader: DefaultResponseHeader,
		Idle:           DefaultIdle,
		PoolIdle:       DefaultPoolIdle,
	}
}

// retryDefaults returns the default retry settings, as documented.
func retryDefaults() Retry {
	return Retry{
		Attempts:           2,
		Backoff:            Duration(25 * time.Millisecond),
		MaxBackoff:         Duration(250 * time.Millisecond),
		BodyBuffer:         64 << 10,
		BudgetRatio:        0.2,
		BudgetMinPerSecond: 3,
	}
}

// passiveDefaults returns the default passive health settings, as
// documented.
func passiveDefaults() PassiveHealth {
	return PassiveHealth{
		ConsecutiveFailures: 5,
		BaseEjection:        Duration(10 * time.Second),
		MaxEjection:         Duration(5 * time.Minute),
		MaxEjectedPercent:   50,
	}
}

// limitsDefaults returns the default limits, as documented.
func limitsDefaults() Limits {
	return Limits{PendingTimeout: Duration(time.Second)}
}

// logDefaults returns the default log settings, as documented.
func logDefaults() Log {
	return Log{Level: "info", Output: "stderr", Sample: new(1.0)}
}

// roundRobin is the default balancing.
var roundRobin = Balance{Policy: PolicyRoundRobin}

// target returns a target of weight 1 at line.
func target(url string, line int) Target {
	return Target{URL: url, Weight: 1, Line: line}
}

func TestLoadGolden(t *testing.T) {
	tests := []struct {
		name string
		file string
		want func(file string) *Config
	}{
		{
			name: "minimal gets every default",
			file: "testdata/valid/minimal.yaml",
			want: func(file string) *Config {
				return &Config{
					Listen:       "127.0.0.1:8080",
					Log:          logDefaults(),
					Routes:       []Route{{Name: "web", Upstream: "web", Retry: retryDefaults(), Line: 3}},
					DrainTimeout: Duration(30 * time.Second),
					Watch:        new(true),
					Upstreams: map[string]*Upstream{
						"web": {
							Targets:           []Target{target("http://127.0.0.1:3000", 8)},
							Timeouts:          timeouts(),
							ResponseHeadLimit: 64 << 10,
							MaxIdlePerTarget:  64,
							Balance:           roundRobin,
							Health:            Health{Passive: passiveDefaults()},
							Limits:            limitsDefaults(),
							Name:              "web",
							Line:              6,
						},
					},
					File: file,
				}
			},
		},
		{
			name: "explicit zero values are kept and hosts normalised",
			file: "testdata/valid/explicit.yaml",
			want: func(file string) *Config {
				return &Config{
					Listen: ":8080",
					Admin:  &Admin{Listen: "[::1]:9090", Failures: 100},
					Log:    logDefaults(),
					Routes: []Route{{
						Name:     "Shop.v2_api-1",
						Match:    Match{Host: "2001:db8::1", PathPrefix: "/"},
						Upstream: "shop",
						Strict:   &Strict{Buffer: 1 << 20, Validate: ValidateNone},
						Retry:    retryDefaults(),
						Line:     6,
					}},
					DrainTimeout: Duration(30 * time.Second),
					Watch:        new(true),
					Upstreams: map[string]*Upstream{
						"shop": {
							Targets: []Target{
								target("HTTP://Shop-1.internal", 15),
								target("http://[2001:db8::2]:8080/", 16),
								target("https://shop_2.docker:443", 17),
							},
							Timeouts:          timeouts(),
							TLS:               &TLS{ServerName: "shop.internal"},
							Resolver:          "[2001:db8::53]:53",
							ResponseHeadLimit: 64 << 10,
							MaxIdlePerTarget:  0,
							Balance:           roundRobin,
							Health:            Health{Passive: passiveDefaults()},
							Limits:            limitsDefaults(),
							Name:              "shop",
							Line:              13,
						},
					},
					File: file,
				}
			},
		},
		{
			name: "full example",
			file: "testdata/full.yaml",
			want: func(file string) *Config {
				return &Config{
					Listen: "0.0.0.0:8080",
					TLS: &ListenTLS{
						Listen:       "0.0.0.0:8443",
						Certificates: []Certificate{{Cert: filepath.Join(filepath.Dir(file), "tls.crt"), Key: filepath.Join(filepath.Dir(file), "tls.key")}},
						MinVersion:   "1.2",
						HTTP2:        new(true),
					},
					TrustedProxies: []string{"10.0.0.0/8", "fd00::/8"},
					Admin: &Admin{
						Listen:   "127.0.0.1:9090",
						Token:    "change-me-to-a-long-random-secret",
						Failures: 500,
					},
					Log: Log{Level: "warn", Access: true, Output: "stdout", Sample: new(0.5), Query: true},
					Routes: []Route{
						{
							Name:     "api",
							Match:    Match{Host: "api.example.com", PathPrefix: "/v1/"},
							MaxBody:  8 << 20,
							Upstream: "api",
							Strict:   &Strict{Buffer: 2 << 20, Validate: ValidateJSON},
							Retry: Retry{
								Attempts:           3,
								PerTryTimeout:      Duration(5 * time.Second),
								Timeout:            Duration(12 * time.Second),
								Backoff:            Duration(50 * time.Millisecond),
								MaxBackoff:         Duration(500 * time.Millisecond),
								OnStatus:           []int{502, 503},
								BodyBuffer:         128 << 10,
								BudgetRatio:        0.1,
								BudgetMinPerSecond: 5,
							},
							Line: 115,
						},
						{
							Name:     "catch-all",
							Upstream: "web",
							Upgrade:  &Upgrade{Protocols: []string{"websocket"}, Idle: Duration(time.Hour)},
							Retry:    retryDefaults(),
							Line:     176,
						},
					},
					DrainTimeout: Duration(time.Minute),
					Watch:        new(false),
					Upstreams: map[string]*Upstream{
						"api": {
							Targets: []Target{
								{URL: "https://10.0.0.11:8443", Weight: 2, Line: 202},
								target("https://api-2.internal:8443", 209),
							},
							Timeouts: Timeouts{
								Connect:        Duration(time.Second),
								ResponseHeader: Duration(10 * time.Second),
								Idle:           Duration(30 * time.Second),
								PoolIdle:       Duration(3 * time.Second),
							},
							TLS: &TLS{
								CAFile:     filepath.Join(filepath.Dir(file), "ca.pem"),
								ServerName: "api.internal",
							},
							Resolver:          "10.0.0.53:53",
							ResponseHeadLimit: 32 << 10,
							MaxIdlePerTarget:  16,
							Balance: Balance{
								Policy:         PolicyConsistentHash,
								HashOn:         "header:X-User-ID",
								HashLoadFactor: 1.5,
							},
							Health: Health{
								Active: &ActiveHealth{
									Path:               "/healthz",
									Host:               "api.internal",
									Interval:           Duration(10 * time.Second),
									Timeout:            Duration(time.Second),
									Expect:             "200-299",
									HealthyThreshold:   3,
									UnhealthyThreshold: 2,
								},
								Passive: PassiveHealth{
									ConsecutiveFailures: 3,
									BaseEjection:        Duration(30 * time.Second),
									MaxEjection:         Duration(10 * time.Minute),
									MaxEjectedPercent:   34,
									Count5xx:            true,
								},
							},
							Limits: Limits{
								MaxConcurrent:       200,
								MaxPending:          100,
								PendingTimeout:      Duration(500 * time.Millisecond),
								TargetMaxConcurrent: 50,
							},
							Name: "api",
							Line: 192,
						},
						"web": {
							Targets:           []Target{target("http://127.0.0.1:3000", 307)},
							Timeouts:          timeouts(),
							ResponseHeadLimit: 64 << 10,
							MaxIdlePerTarget:  64,
							Balance:           roundRobin,
							Health:            Health{Passive: passiveDefaults()},
							Limits:            limitsDefaults(),
							Name:              "web",
							Line:              305,
						},
					},
					Tracing: &Tracing{
						OTLPEndpoint:     "otel-collector.internal:4318",
						ServiceName:      "candor-edge",
						Sample:           new(0.1),
						TrustTraceparent: []string{"10.0.0.0/8", "2001:db8::/32"},
					},
					File: file,
				}
			},
		},
		{
			name: "every balancing, health, limit and retry key",
			file: "testdata/valid/resilience.yaml",
			want: func(file string) *Config {
				return &Config{
					Listen: "127.0.0.1:8080",
					Log:    logDefaults(),
					Routes: []Route{
						{
							Name:     "api",
							Upstream: "api",
							Retry: Retry{
								Attempts:           10,
								PerTryTimeout:      Duration(2 * time.Second),
								Timeout:            Duration(5 * time.Second),
								Backoff:            Duration(50 * time.Millisecond),
								MaxBackoff:         Duration(time.Minute),
								OnStatus:           []int{502, 503, 504},
								BodyBuffer:         64 << 20,
								BudgetRatio:        1,
								BudgetMinPerSecond: 10000,
							},
							Line: 4,
						},
						{
							Name:     "web",
							Upstream: "web",
							Retry: Retry{
								Attempts:           1,
								Backoff:            Duration(time.Second),
								MaxBackoff:         Duration(time.Second),
								BodyBuffer:         64 << 10,
								BudgetRatio:        0.2,
								BudgetMinPerSecond: 3,
							},
							Line: 16,
						},
					},
					DrainTimeout: Duration(30 * time.Second),
					Watch:        new(true),
					Upstreams: map[string]*Upstream{
						"api": {
							Targets: []Target{
								{URL: "http://10.0.0.1:8080", Weight: 3, Line: 22},
								{URL: "http://10.0.0.2:8080", Weight: 1000, Line: 24},
							},
							Timeouts:          timeouts(),
							ResponseHeadLimit: 64 << 10,
							MaxIdlePerTarget:  64,
							Balance: Balance{
								Policy:         PolicyConsistentHash,
								HashOn:         "header:x-user-id",
								HashLoadFactor: 10,
							},
							Health: Health{
								Active: &ActiveHealth{
									Path:               "/healthz?full=1",
									Host:               "[2001:db8::1]:8080",
									Interval:           Duration(100 * time.Millisecond),
									Timeout:            Duration(50 * time.Millisecond),
									Expect:             "204",
									HealthyThreshold:   1,
									UnhealthyThreshold: 100,
								},
								Passive: PassiveHealth{
									ConsecutiveFailures: 1000,
									BaseEjection:        Duration(time.Second),
									MaxEjection:         Duration(24 * time.Hour),
									MaxEjectedPercent:   100,
									Count5xx:            true,
								},
							},
							Limits: Limits{
								MaxConcurrent:       100,
								MaxPending:          50,
								PendingTimeout:      Duration(time.Minute),
								TargetMaxConcurrent: 20,
							},
							Name: "api",
							Line: 20,
						},
						"web": {
							Targets:           []Target{target("http://10.0.0.3", 52)},
							Timeouts:          timeouts(),
							ResponseHeadLimit: 64 << 10,
							MaxIdlePerTarget:  64,
							Balance:           Balance{Policy: PolicyLeastRequest},
							Health: Health{
								Active: &ActiveHealth{
									Path:               "/",
									Host:               "web.internal",
									Interval:           Duration(time.Hour),
									Timeout:            Duration(59 * time.Minute),
									Expect:             "100-599",
									HealthyThreshold:   2,
									UnhealthyThreshold: 3,
								},
								Passive: passiveDefaults(),
							},
							Limits: limitsDefaults(),
							Name:   "web",
							Line:   50,
						},
					},
					File: file,
				}
			},
		},
		{
			name: "defaults of active checks and consistent_hash; explicit zeros kept",
			file: "testdata/valid/resilience_defaults.yaml",
			want: func(file string) *Config {
				return &Config{
					Listen: "127.0.0.1:8080",
					Log:    logDefaults(),
					Routes: []Route{{
						Name:     "a",
						Upstream: "a",
						Retry: Retry{
							Attempts:   1,
							Backoff:    Duration(25 * time.Millisecond),
							MaxBackoff: Duration(250 * time.Millisecond),
							OnStatus:   []int{},
						},
						Line: 4,
					}},
					DrainTimeout: Duration(30 * time.Second),
					Watch:        new(true),
					Upstreams: map[string]*Upstream{
						"a": {
							Targets:           []Target{target("http://10.0.0.1", 15)},
							Timeouts:          timeouts(),
							ResponseHeadLimit: 64 << 10,
							MaxIdlePerTarget:  64,
							Balance: Balance{
								Policy:         PolicyConsistentHash,
								HashOn:         "cookie:Session_ID",
								HashLoadFactor: 1.25,
							},
							Health: Health{
								Active: &ActiveHealth{
									Path:               "/healthz",
									Interval:           Duration(5 * time.Second),
									Timeout:            Duration(2 * time.Second),
									Expect:             "200-399",
									HealthyThreshold:   2,
									UnhealthyThreshold: 3,
								},
								Passive: PassiveHealth{
									BaseEjection: Duration(10 * time.Second),
									MaxEjection:  Duration(5 * time.Minute),
								},
							},
							Limits: limitsDefaults(),
							Name:   "a",
							Line:   13,
						},
					},
					File: file,
				}
			},
		},
		{
			name: "every drain, maintenance, watch and upgrade key",
			file: "testdata/valid/operations.yaml",
			want: func(file string) *Config {
				return &Config{
					Listen: "127.0.0.1:8080",
					Log:    logDefaults(),
					Routes: []Route{
						{
							Name:     "ws",
							Upstream: "ws",
							Upgrade:  &Upgrade{Protocols: []string{"websocket", "x-custom_1.0"}, Idle: Duration(24 * time.Hour)},
							Retry:    retryDefaults(),
							Line:     6,
						},
						{
							Name:        "b",
							Upstream:    "ws",
							Maintenance: true,
							Upgrade:     &Upgrade{Protocols: []string{"websocket"}, Idle: Duration(10 * time.Minute)},
							Retry:       retryDefaults(),
							Line:        12,
						},
					},
					DrainTimeout: Duration(10 * time.Minute),
					Watch:        new(false),
					Upstreams: map[string]*Upstream{
						"ws": {
							Targets: []Target{
								{URL: "http://10.0.0.1:8080", Drain: true, Weight: 1, Line: 21},
								target("http://10.0.0.2:8080", 23),
							},
							Timeouts:          timeouts(),
							ResponseHeadLimit: 64 << 10,
							MaxIdlePerTarget:  64,
							Balance:           roundRobin,
							Health:            Health{Passive: passiveDefaults()},
							Limits:            limitsDefaults(),
							Name:              "ws",
							Line:              19,
						},
					},
					File: file,
				}
			},
		},
		{
			name: "every admin, log and tracing key",
			file: "testdata/valid/observability.yaml",
			want: func(file string) *Config {
				return &Config{
					Listen: "127.0.0.1:8080",
					Admin: &Admin{
						Listen:   "0.0.0.0:9090",
						Token:    "A-zA-Z0-9_!#$%&'*+./:;<=>?@[]^`{|}~\"\\",
						Failures: 10000,
					},
					Log: Log{
						Level:  "info",
						Output: filepath.Join(filepath.Dir(file), "candor.log"),
						Sample: new(0.0),
						Query:  true,
					},
					Routes:       []Route{{Name: "a", Upstream: "a", Retry: retryDefaults(), Line: 21}},
					DrainTimeout: Duration(30 * time.Second),
					Watch:        new(true),
					Upstreams: map[string]*Upstream{
						"a": {
							Targets:           []Target{target("http://10.0.0.1", 26)},
							Timeouts:          timeouts(),
							ResponseHeadLimit: 64 << 10,
							MaxIdlePerTarget:  64,
							Balance:           roundRobin,
							Health:            Health{Passive: passiveDefaults()},
							Limits:            limitsDefaults(),
							Name:              "a",
							Line:              24,
						},
					},
					Tracing: &Tracing{
						OTLPEndpoint:     "[2001:db8::4]:4318",
						ServiceName:      "edge.gw_1-a",
						Sample:           new(0.0),
						TrustTraceparent: []string{"127.0.0.1/32", "10.0.0.0/8", "2001:DB8::/32", "::1/128"},
					},
					File: file,
				}
			},
		},
		{
			name: "admin on a loopback name needs no token; admin and tracing defaults",
			file: "testdata/valid/observability_defaults.yaml",
			want: func(file string) *Config {
				return &Config{
					Listen:       "127.0.0.1:8080",
					Admin:        &Admin{Listen: "LocalHost:9090", Failures: 100},
					Log:          logDefaults(),
					Routes:       []Route{{Name: "a", Upstream: "a", Retry: retryDefaults(), Line: 8}},
					DrainTimeout: Duration(30 * time.Second),
					Watch:        new(true),
					Upstreams: map[string]*Upstream{
						"a": {
							Targets:           []Target{target("http://10.0.0.1", 13)},
							Timeouts:          timeouts(),
							ResponseHeadLimit: 64 << 10,
							MaxIdlePerTarget:  64,
							Balance:           roundRobin,
							Health:            Health{Passive: passiveDefaults()},
							Limits:            limitsDefaults(),
							Name:              "a",
							Line:              11,
						},
					},
					Tracing: &Tracing{OTLPEndpoint: "127.0.0.1:4318", ServiceName: "candor", Sample: new(1.0)},
					File:    file,
				}
			},
		},
		{
			name: "aliases share a mapping",
			file: "testdata/valid/anchors.yaml",
			want: func(file string) *Config {
				fast := Timeouts{
					Connect:        Duration(500 * time.Millisecond),
					ResponseHeader: Duration(5 * time.Second),
					Idle:           DefaultIdle,
					PoolIdle:       DefaultPoolIdle,
				}
				return &Config{
					Listen: "127.0.0.1:8080",
					Log:    logDefaults(),
					Routes: []Route{
						{Name: "a", Match: Match{PathPrefix: "/a"}, Upstream: "a", Retry: retryDefaults(), Line: 3},
						{Name: "b", Match: Match{PathPrefix: "/b"}, Upstream: "b", Retry: retryDefaults(), Line: 6},
					},
					DrainTimeout: Duration(30 * time.Second),
					Watch:        new(true),
					Upstreams: map[string]*Upstream{
						"a": {
							Targets:           []Target{target("http://10.0.0.1:80", 11)},
							Timeouts:          fast,
							ResponseHeadLimit: 64 << 10,
							MaxIdlePerTarget:  64,
							Balance:           roundRobin,
							Health:            Health{Passive: passiveDefaults()},
							Limits:            limitsDefaults(),
							Name:              "a",
							Line:              10,
						},
						"b": {
							Targets:           []Target{target("http://10.0.0.2:80", 16)},
							Timeouts:          fast,
							ResponseHeadLimit: 64 << 10,
							MaxIdlePerTarget:  64,
							Balance:           roundRobin,
							Health:            Health{Passive: passiveDefaults()},
							Limits:            limitsDefaults(),
							Name:              "b",
							Line:              15,
						},
					},
					File: file,
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load(tt.file)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := tt.want(abs(t, tt.file))
			serverKeyDefaults(want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Load(%s) mismatch (-want +got):\n%s", tt.file, diff)
			}
		})
	}
}

func TestLoadInvalid(t *testing.T) {
	files := invalidFiles(t)
	if len(files) < 25 {
		t.Errorf("only %d invalid cases, want at least 25", len(files))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(data), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok || !strings.HasPrefix(want, filepath.Base(file)+":") {
				t.Fatalf("first line %q is not \"# want: %s:LINE: ...\"", first, filepath.Base(file))
			}
			c, err := Load(file)
			if err == nil {
				t.Fatalf("Load succeeded: %+v", c)
			}
			if c != nil {
				t.Errorf("Load returned a config with its error")
			}
			if !strings.Contains(err.Error(), string(filepath.Separator)+want) {
				t.Errorf("error does not contain %q:\n%v", want, err)
			}
			errs, ok := errors.AsType[*Errors](err)
			if !ok {
				t.Fatalf("error is %T, want *Errors", err)
			}
			for _, line := range strings.Split(errs.Error(), "\n") {
				if !errLine.MatchString(line) {
					t.Errorf("error line %q lacks file:line:", line)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error reveals a password: %v", err)
			}
		})
	}
}

func TestParseReportsEveryError(t *testing.T) {
	const data = `listen: nowhere
log:
  level: loud
routes:
  - name: a
    upstream: missing
  - name: a
    upstream: api
    match: {path_prefix: nope}
upstreams:
  api:
    targets:
      - url: ftp://x
      - url: http://x/p
    timeouts:
      connect: 5
      idle: forever
    bogus: 1
`
	_, err := Parse("multi.yaml", []byte(data))
	got, ok := errors.AsType[*Errors](err)
	if !ok {
		t.Fatalf("Parse error = %v (%T), want *Errors", err, err)
	}
	fe := func(line int, field, reason string) *FieldError {
		return &FieldError{File: "multi.yaml", Line: line, Field: field, Reason: reason}
	}
	want := &Errors{
		fe(1, "listen", `"nowhere" is not host:port (missing port in address)`),
		fe(3, "log.level", `must be debug, info, warn or error, got "loud"`),
		fe(6, "routes[0].upstream", `route names missing upstream "missing"`),
		fe(7, "routes[1].name", `duplicate route name "a" (first at line 5, routes[0])`),
		fe(9, "routes[1].match.path_prefix", `must begin with "/", got "nope"`),
		fe(13, "upstreams.api.targets[0].url", `unsupported scheme "ftp": write http://host[:port] or https://host[:port]`),
		fe(14, "upstreams.api.targets[1].url", `must not have a path, got "/p" (routes forward the request path as is)`),
		fe(16, "upstreams.api.timeouts.connect", "missing unit, e.g. 5s"),
		fe(17, "upstreams.api.timeouts.idle", `invalid duration "forever": write a number and a unit (ns, us, ms, s, m, h), e.g. 5s or 1m30s`),
		fe(18, "upstreams.api.bogus", "unknown key (valid keys: targets, protocol, timeouts, tls, resolver, response_head_limit, max_idle_per_target, balance, health, limits)"),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors mismatch (-want +got):\n%s", diff)
	}
	wantText := `multi.yaml:1: listen: "nowhere" is not host:port (missing port in address)
multi.yaml:3: log.level: must be debug, info, warn or error, got "loud"`
	if text := got.Error(); !strings.HasPrefix(text, wantText+"\n") {
		t.Errorf("Error() =\n%s\nwant it to begin with\n%s", text, wantText)
	}
	if fe, ok := errors.AsType[*FieldError](err); !ok || fe.Line != 1 {
		t.Errorf("errors.AsType[*FieldError] = %v, %v; want the first problem", fe, ok)
	}
}

func TestParseDoesNotRepeatDecodeErrors(t *testing.T) {
	fe := func(line int, field, reason string) *FieldError {
		return &FieldError{File: "x.yaml", Line: line, Field: field, Reason: reason}
	}
	tests := []struct {
		name string
		data string
		want *Errors
	}{
		{
			name: "wrong types are not also missing",
			data: `routes:
  - name: a
    upstream: [a]
upstreams:
  a:
    targets:
      - url: {u: 1}
`,
			want: &Errors{
				fe(3, "routes[0].upstream", "expected a string, got a list"),
				fe(7, "upstreams.a.targets[0].url", "expected a string, got a mapping"),
			},
		},
		{
			name: "a route naming a broken upstream map",
			data: `routes:
  - name: a
    upstream: a
upstreams: [a]
`,
			want: &Errors{fe(4, "upstreams", "expected a mapping, got a list")},
		},
		{
			name: "a route naming a broken upstream",
			data: `routes:
  - name: a
    upstream: a
upstreams:
  a: [x]
`,
			want: &Errors{fe(5, "upstreams.a", "expected a mapping, got a list")},
		},
		{
			name: "an unknown key does not hide a missing one",
			data: `routes:
  - name: a
    upstrem: a
upstreams:
  a:
`,
			want: &Errors{
				fe(2, "routes[0].upstream", "required"),
				fe(3, "routes[0].upstrem", "unknown key (valid keys: name, match, upstream, strict, maintenance, upgrade, retry, max_body)"),
			},
		},
		{
			name: "a broken key is not the basis of another's check",
			data: `routes:
  - name: a
    upstream: a
    retry:
      per_try_timeout: 5
      timeout: 1s
      backoff: [1s]
      max_backoff: 10ms
upstreams:
  a:
    targets:
      - url: http://a.internal
        weight: "2"
    balance:
      policy: [consistent_hash]
      hash_on: header:X-User
      hash_load_factor: high
    health:
      active:
        path: /
        interval: often
        timeout: 1m
      passive:
        base_ejection: 1
        max_ejection: 1s
    limits:
      max_concurrent: lots
      max_pending: 10
`,
			want: &Errors{
				fe(5, "routes[0].retry.per_try_timeout", "missing unit, e.g. 5s"),
				fe(7, "routes[0].retry.backoff", "expected a duration such as 5s, got a list"),
				fe(13, "upstreams.a.targets[0].weight", "expected an integer, got a string"),
				fe(15, "upstreams.a.balance.policy", "expected a string, got a list"),
				fe(17, "upstreams.a.balance.hash_load_factor", "expected a number, got a string"),
				fe(21, "upstreams.a.health.active.interval", `invalid duration "often": write a number and a unit (ns, us, ms, s, m, h), e.g. 5s or 1m30s`),
				fe(24, "upstreams.a.health.passive.base_ejection", "missing unit, e.g. 5s"),
				fe(27, "upstreams.a.limits.max_concurrent", "expected an integer, got a string"),
			},
		},
		{
			name: "a broken admin key is not also a missing token",
			data: `admin:
  listen: [0.0.0.0:9090]
  failures: many
tracing:
  otlp_endpoint: {host: collector}
  sample: all
  trust_traceparent: [[10.0.0.0/8]]
routes:
  - name: a
    upstream: a
upstreams:
  a:
`,
			want: &Errors{
				fe(2, "admin.listen", "expected a string, got a list"),
				fe(3, "admin.failures", "expected an integer, got a string"),
				fe(5, "tracing.otlp_endpoint", "expected a string, got a mapping"),
				fe(6, "tracing.sample", "expected a number, got a string"),
				fe(7, "tracing.trust_traceparent[0]", "expected a string, got a list"),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("x.yaml", []byte(tt.data))
			got, ok := errors.AsType[*Errors](err)
			if !ok {
				t.Fatalf("Parse error = %v (%T), want *Errors", err, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("errors mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load error = %v, want fs.ErrNotExist", err)
	}
}

// writeCA writes a freshly generated self-signed CA certificate, PEM
// encoded, to path.
func writeCA(t *testing.T, path string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRelativeCAFile(t *testing.T) {
	dir := t.TempDir()
	writeCA(t, filepath.Join(dir, "certs", "ca.pem"))
	conf := func(ca string) []byte {
		return []byte(`routes:
  - name: api
    upstream: api
upstreams:
  api:
    targets:
      - url: https://api.internal
    tls:
      ca_file: ` + ca + "\n")
	}
	want := filepath.Join(dir, "certs", "ca.pem")
	tests := []struct {
		name string
		// load returns the config read from a file in dir holding data.
		load func(t *testing.T, data []byte) (*Config, error)
		ca   string
	}{
		{
			name: "Load with a relative ca_file",
			ca:   "certs/ca.pem",
			load: func(t *testing.T, data []byte) (*Config, error) {
				file := filepath.Join(dir, "candor.yaml")
				if err := os.WriteFile(file, data, 0o644); err != nil {
					t.Fatal(err)
				}
				return Load(file)
			},
		},
		{
			name: "Load with ./ and ..",
			ca:   "./sub/../certs/ca.pem",
			load: func(t *testing.T, data []byte) (*Config, error) {
				file := filepath.Join(dir, "candor2.yaml")
				if err := os.WriteFile(file, data, 0o644); err != nil {
					t.Fatal(err)
				}
				return Load(file)
			},
		},
		{
			name: "Load from a sub-folder",
			ca:   "../certs/ca.pem",
			load: func(t *testing.T, data []byte) (*Config, error) {
				file := filepath.Join(dir, "conf", "candor.yaml")
				if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, data, 0o644); err != nil {
					t.Fatal(err)
				}
				return Load(file)
			},
		},
		{
			name: "Parse with a relative file name",
			ca:   "certs/ca.pem",
			load: func(t *testing.T, data []byte) (*Config, error) {
				t.Chdir(dir)
				return Parse("candor.yaml", data)
			},
		},
		{
			name: "absolute ca_file is kept",
			ca:   want,
			load: func(t *testing.T, data []byte) (*Config, error) {
				return Parse("elsewhere/candor.yaml", data)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.load(t, conf(tt.ca))
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if got := c.Upstream("api").TLS.CAFile; got != want {
				t.Errorf("CAFile = %q, want %q", got, want)
			}
		})
	}

	t.Run("relative to the file, not the working directory", func(t *testing.T) {
		_, err := Parse(filepath.Join(t.TempDir(), "candor.yaml"), conf("certs/ca.pem"))
		if err == nil || !strings.Contains(err.Error(), "candor.yaml:9: upstreams.api.tls.ca_file: cannot read") {
			t.Errorf("Parse error = %v, want ca_file cannot read", err)
		}
	})
}

func TestRelativeLogOutput(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := func(output string) []byte {
		return []byte("log:\n  output: " + output + "\nroutes: [{name: a, upstream: a}]\nupstreams: {a: {}}\n")
	}
	tests := []struct {
		name   string
		file   string // the configuration's name, relative to dir
		output string
		want   string
	}{
		{name: "relative file", file: "candor.yaml", output: "logs/candor.log", want: filepath.Join(dir, "logs", "candor.log")},
		{name: "from a sub-folder", file: "conf/candor.yaml", output: "../logs/candor.log", want: filepath.Join(dir, "logs", "candor.log")},
		{name: "in the file's folder", file: "candor.yaml", output: "candor.log", want: filepath.Join(dir, "candor.log")},
		{name: "a file called stderr", file: "candor.yaml", output: "./stderr", want: filepath.Join(dir, "stderr")},
		{name: "absolute", file: "elsewhere/candor.yaml", output: filepath.Join(dir, "logs", "a.log"), want: filepath.Join(dir, "logs", "a.log")},
		{name: "stderr", file: "candor.yaml", output: "stderr", want: "stderr"},
		{name: "stdout", file: "candor.yaml", output: "stdout", want: "stdout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(filepath.Join(dir, tt.file), conf(tt.output))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if c.Log.Output != tt.want {
				t.Errorf("Log.Output = %q, want %q", c.Log.Output, tt.want)
			}
		})
	}

	t.Run("Parse with a relative file name", func(t *testing.T) {
		t.Chdir(dir)
		c, err := Parse("candor.yaml", conf("logs/candor.log"))
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		if want := filepath.Join(dir, "logs", "candor.log"); c.Log.Output != want {
			t.Errorf("Log.Output = %q, want %q", c.Log.Output, want)
		}
	})

	t.Run("relative to the file, not the working directory", func(t *testing.T) {
		t.Chdir(dir)
		other := t.TempDir()
		_, err := Parse(filepath.Join(other, "candor.yaml"), conf("logs/candor.log"))
		want := `candor.yaml:2: log.output: folder "` + filepath.Join(other, "logs") + `" does not exist`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse error = %v, want %q", err, want)
		}
	})

	t.Run("validation creates no file", func(t *testing.T) {
		if _, err := Parse(filepath.Join(dir, "candor.yaml"), conf("logs/new.log")); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, "logs", "new.log")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat(new.log) = %v, want it absent", err)
		}
	})
}

func TestLoopbackListen(t *testing.T) {
	tests := []struct {
		listen string
		want   bool
	}{
		{"127.0.0.1:9090", true},
		{"127.8.9.10:9090", true},
		{"[::1]:9090", true},
		{"[::ffff:127.0.0.1]:9090", true},
		{"localhost:9090", true},
		{"LOCALHOST:0", true},
		{":9090", false},
		{"0.0.0.0:9090", false},
		{"[::]:9090", false},
		{"10.0.0.1:9090", false},
		{"[2001:db8::1]:9090", false},
		{"admin.internal:9090", false},
		{"localhost.example:9090", false},
		{"my-localhost:9090", false},
		{"127.0.0.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.listen, func(t *testing.T) {
			if got := loopbackListen(tt.listen); got != tt.want {
				t.Errorf("loopbackListen(%q) = %v, want %v", tt.listen, got, tt.want)
			}
		})
	}
}

// TestTokenNeverInErrors checks that no error quotes admin.token, valid or
// not, whatever else is wrong.
func TestTokenNeverInErrors(t *testing.T) {
	const secret = "Zq7xK2vR"
	tests := []struct {
		name  string
		admin string // the admin section
		want  string // a problem reported
	}{
		{name: "short", admin: "listen: 0.0.0.0:9090\n  token: " + secret, want: "admin.token: must be at least 16 characters, got 8"},
		{name: "space", admin: "listen: 0.0.0.0:9090\n  token: " + secret + " " + secret + secret, want: "admin.token: must not contain spaces"},
		{name: "tab", admin: "listen: 0.0.0.0:9090\n  token: \"" + secret + "\\t" + secret + secret + "\"", want: "admin.token: must be printable ASCII"},
		{name: "newline", admin: "listen: 0.0.0.0:9090\n  token: \"" + secret + "\\n" + secret + secret + "\"", want: "admin.token: must be printable ASCII"},
		{name: "non-ASCII", admin: "listen: 0.0.0.0:9090\n  token: " + secret + "é" + secret + secret, want: "admin.token: must be printable ASCII"},
		{name: "valid token, other problems", admin: "listen: 0.0.0.0:http\n  failures: 0\n  token: " + secret + secret, want: "admin.failures: must be between 1 and 10000"},
		{name: "a list", admin: "listen: 0.0.0.0:9090\n  token: [" + secret + "]", want: "admin.token: expected a string, got a list"},
		{name: "a mapping", admin: "listen: 0.0.0.0:9090\n  token: {" + secret + ": " + secret + "}", want: "admin.token: expected a string, got a mapping"},
		{name: "binary", admin: "listen: 0.0.0.0:9090\n  token: !!binary " + secret + secret, want: "admin.token: expected a string, got binary data"},
		{name: "read as a tag", admin: "listen: 0.0.0.0:9090\n  token: !" + secret + secret, want: "admin.token: must not be empty"},
		{name: "duplicate", admin: "listen: 0.0.0.0:9090\n  token: " + secret + secret + "\n  token: " + secret + secret + "x", want: "admin.token: duplicate key"},
		{name: "misspelt key", admin: "listen: 0.0.0.0:9090\n  tokne: " + secret + secret, want: "admin.tokne: unknown key"},
		{name: "alias", admin: "listen: 0.0.0.0:9090\n  token: *" + secret + secret, want: "unknown anchor referenced"},
		{name: "alias on the next line", admin: "listen: 0.0.0.0:9090\n  token:\n    *" + secret + secret, want: "unknown anchor referenced"},
		{name: "alias in flow", admin: "{listen: \"0.0.0.0:9090\", \"token\": *" + secret + secret + "}", want: "unknown anchor referenced"},
		{name: "unterminated quote", admin: "listen: 0.0.0.0:9090\n  token: \"" + secret + secret, want: "invalid YAML"},
		{name: "reserved character", admin: "listen: 0.0.0.0:9090\n  token: @" + secret + secret, want: "invalid YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := "admin:\n  " + tt.admin + "\nroutes: [{name: a, upstream: a}]\nupstreams: {a: {}}\n"
			_, err := Parse("x.yaml", []byte(data))
			if err == nil {
				t.Fatalf("Parse succeeded:\n%s", data)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse error = %v, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("Parse error reveals the token:\n%v", err)
			}
		})
	}

	t.Run("Validate", func(t *testing.T) {
		for _, token := range []string{secret, secret + " " + secret, secret + "\x00" + secret, secret + "\xff" + secret} {
			c := built()
			c.ApplyDefaults()
			c.Admin = &Admin{Listen: "[::]:9090", Token: token, Failures: 100}
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), "admin.token: ") {
				t.Errorf("Validate with token %q = %v, want an admin.token problem", token, err)
			} else if strings.Contains(err.Error(), secret) {
				t.Errorf("Validate error reveals the token:\n%v", err)
			}
		}
	})
}

func TestMarshalRoundTrip(t *testing.T) {
	for _, file := range validFiles(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			c, err := Load(file)
			if err != nil {
				t.Fatal(err)
			}
			data, err := yaml.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			again, err := Parse(c.File, data)
			if err != nil {
				t.Fatalf("Parse(Marshal(c)): %v\n%s", err, data)
			}
			if diff := cmp.Diff(c, again, ignoreLines()); diff != "" {
				t.Errorf("round trip mismatch (-loaded +reparsed):\n%s\n%s", diff, data)
			}
		})
	}
}

// ignoreLines ignores the Line fields, which a round trip changes, and the
// difference between nil and empty lists (yaml.Marshal writes both as []).
func ignoreLines() cmp.Option {
	return cmp.Options{
		cmpopts.EquateEmpty(),
		cmpopts.IgnoreFields(Route{}, "Line"),
		cmpopts.IgnoreFields(Upstream{}, "Line"),
		cmpopts.IgnoreFields(Target{}, "Line"),
	}
}

func TestUpstream(t *testing.T) {
	c, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want string // "" for none
	}{
		{name: "api", want: "api"},
		{name: "web", want: "web"},
		{name: "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := c.Upstream(tt.name)
			got := ""
			if u != nil {
				got = u.Name
			}
			if got != tt.want {
				t.Errorf("Upstream(%q).Name = %q, want %q", tt.name, got, tt.want)
			}
		})
	}
}

func TestParseLimitsAliasExpansion(t *testing.T) {
	var b strings.Builder
	b.WriteString("routes: [{name: a, upstream: a}]\nupstreams:\n  a: &a\n    targets:\n")
	for i := range 200 {
		b.WriteString("      - url: http://h" + strings.Repeat("x", i) + ".example\n")
	}
	for i := range 100 {
		b.WriteString("  b" + strings.Repeat("b", i) + ": *a\n")
	}
	_, err := Parse("bomb.yaml", []byte(b.String()))
	got, _ := errors.AsType[*Errors](err)
	// Each alias expands to about 600 nodes; the budget runs out at the
	// 45th alias (line 205+44), and the error names that alias's line.
	want := &Errors{{File: "bomb.yaml", Line: 249, Reason: "aliases expand the document more than 10-fold"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Parse errors mismatch (-want +got):\n%s", diff)
	}
}

func TestHashKey(t *testing.T) {
	tests := []struct {
		name     string
		hashOn   string
		wantKind string
		wantName string
	}{
		{name: "header is canonical", hashOn: "header:x-user-id", wantKind: "header", wantName: "X-User-Id"},
		{name: "canonical header kept", hashOn: "header:X-Tenant", wantKind: "header", wantName: "X-Tenant"},
		{name: "cookie kept as written", hashOn: "cookie:session_ID", wantKind: "cookie", wantName: "session_ID"},
		{name: "cookie with token symbols", hashOn: "cookie:__Host-id!", wantKind: "cookie", wantName: "__Host-id!"},
		{name: "empty"},
		{name: "unknown kind", hashOn: "query:user"},
		{name: "upper-case kind", hashOn: "Header:X-User"},
		{name: "missing name", hashOn: "header:"},
		{name: "no colon", hashOn: "X-User"},
		{name: "space in name", hashOn: "header: X-User"},
		{name: "separator in name", hashOn: "cookie:a=b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind, name := Balance{Policy: PolicyConsistentHash, HashOn: tt.hashOn}.HashKey()
			if kind != tt.wantKind || name != tt.wantName {
				t.Errorf("HashKey(%q) = %q, %q; want %q, %q", tt.hashOn, kind, name, tt.wantKind, tt.wantName)
			}
			if valid := hashOnProblem(tt.hashOn) == ""; valid != (tt.wantKind != "") {
				t.Errorf("hashOnProblem(%q) valid = %v, HashKey kind %q", tt.hashOn, valid, kind)
			}
		})
	}
}

func TestExpectRange(t *testing.T) {
	tests := []struct {
		name   string
		expect string
		lo, hi int // 0, 0: invalid
	}{
		{name: "default", expect: "200-399", lo: 200, hi: 399},
		{name: "single status", expect: "204", lo: 204, hi: 204},
		{name: "widest", expect: "100-599", lo: 100, hi: 599},
		{name: "equal bounds", expect: "503-503", lo: 503, hi: 503},
		{name: "empty"},
		{name: "class", expect: "2xx"},
		{name: "reversed", expect: "399-200"},
		{name: "below 100", expect: "099"},
		{name: "above 599", expect: "200-600"},
		{name: "two digits", expect: "20-399"},
		{name: "four digits", expect: "0200"},
		{name: "spaces", expect: "200 - 399"},
		{name: "sign", expect: "+200"},
		{name: "open range", expect: "200-"},
		{name: "three parts", expect: "200-300-400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lo, hi := (&ActiveHealth{Expect: tt.expect}).ExpectRange()
			if lo != tt.lo || hi != tt.hi {
				t.Errorf("ExpectRange(%q) = %d, %d; want %d, %d", tt.expect, lo, hi, tt.lo, tt.hi)
			}
			if valid := expectProblem(tt.expect) == ""; valid != (tt.lo != 0) {
				t.Errorf("expectProblem(%q) valid = %v, want %v", tt.expect, valid, tt.lo != 0)
			}
		})
	}
}

func TestProbeHostProblem(t *testing.T) {
	tests := []struct {
		name string
		host string
		want bool // valid
	}{
		{name: "name", host: "api.internal", want: true},
		{name: "name and port", host: "api.internal:8080", want: true},
		{name: "IPv4", host: "10.0.0.1", want: true},
		{name: "IPv4 and port", host: "10.0.0.1:80", want: true},
		{name: "IPv6 in brackets", host: "[2001:db8::1]", want: true},
		{name: "IPv6 in brackets and port", host: "[::1]:8080", want: true},
		{name: "bare IPv6", host: "2001:db8::1"},
		{name: "IPv4 in brackets", host: "[10.0.0.1]:80"},
		{name: "zone", host: "[fe80::1%eth0]"},
		{name: "empty port", host: "api:"},
		{name: "port 0", host: "api:0"},
		{name: "port range", host: "api:65536"},
		{name: "named port", host: "api:http"},
		{name: "space", host: "a pi"},
		{name: "scheme", host: "http://api"},
		{name: "path", host: "api/x"},
		{name: "unclosed bracket", host: "[::1"},
		{name: "bad IPv4", host: "10.0.0.256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			why := probeHostProblem(tt.host)
			if (why == "") != tt.want {
				t.Errorf("probeHostProblem(%q) = %q, want valid %v", tt.host, why, tt.want)
			}
		})
	}
}
