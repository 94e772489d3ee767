package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Limits checked by [Config.Validate].
const (
	maxStrictBuffer     = Size(1 << 30) // 1GiB
	maxIdleTimeout      = Duration(24 * time.Hour)
	maxDrainTimeout     = Duration(10 * time.Minute)
	minResponseHead     = Size(1 << 10) // 1KiB
	maxResponseHead     = Size(1 << 20) // 1MiB
	maxIdlePerTarget    = 100000
	maxCAFileSize       = 16 << 20
	maxNameLen          = 64
	maxHostnameLen      = 253
	maxHostnameLabelLen = 63

	maxWeight              = 1000
	minHashLoadFactor      = 1
	maxHashLoadFactor      = 10
	minActiveInterval      = Duration(100 * time.Millisecond)
	maxActiveInterval      = Duration(time.Hour)
	maxThreshold           = 100
	maxConsecutiveFailures = 1000
	maxEjection            = Duration(24 * time.Hour)
	maxPendingTimeout      = Duration(time.Minute)
	maxRetryAttempts       = 10
	maxRetryBackoff        = Duration(time.Minute)
	maxRetryBodyBuffer     = Size(64 << 20) // 64MiB
	maxBudgetMinPerSecond  = 10000

	maxServerLine     = Size(1 << 20) // 1MiB
	minServerLine     = Size(256)
	maxServerHeader   = Size(1 << 20) // 1MiB
	minServerHeader   = Size(1 << 10) // 1KiB
	maxServerFields   = 10000
	maxServerTimeout  = Duration(time.Hour)
	maxServerConns    = 1000000
	maxRouteBody      = Size(1 << 40) // 1TiB
	maxCertFileSize   = 1 << 20
	maxTrustedProxies = 1000

	minAdminToken     = 16
	maxAdminFailures  = 10000
	maxServiceNameLen = 255
)

// Upstream returns the upstream called name, or nil.
func (c *Config) Upstream(name string) *Upstream { return c.Upstreams[name] }

// Validate checks a defaulted configuration (see [Config.ApplyDefaults])
// and returns an *[Errors] with every problem, or nil. Lines come from the
// Line fields of routes, upstreams and targets (0 elsewhere); [Parse]
// reports exact lines. Validate does not modify c, but reads tls.ca_file
// and looks up the folder of a log.output file.
//
// The rules:
//   - listen and admin.listen are host:port with a numeric port 0-65535;
//     the host is empty (all interfaces), an IP address or a host name.
//     admin, when present, requires admin.listen.
//   - admin.token is required when admin.listen's host is not a loopback
//     IP address or "localhost" (an empty host, all interfaces, is not
//     loopback). When set, it is at least 16 characters of printable
//     ASCII, without spaces. Errors never quote it. admin.failures is 1 to
//     10000.
//   - log.level is debug, info, warn or error. log.output is stderr,
//     stdout or a file path whose folder exists (the path itself, if it
//     exists, is not a folder). log.sample is 0 to 1.
//   - tracing.otlp_endpoint is required when tracing is present: host:port
//     (no scheme), port 1-65535. tracing.service_name is 1 to 255 letters,
//     digits, '.', '_' or '-'. tracing.sample is 0 to 1.
//     tracing.trust_traceparent lists CIDR prefixes (10.0.0.0/8,
//     2001:db8::/32; one address: 10.0.0.1/32), without host bits set,
//     each once.
//   - drain_timeout is greater than 0 and at most 10m.
//   - server.max_request_line is 256 bytes to 1MiB; server.max_header_bytes
//     is 1KiB to 1MiB; server.max_header_fields is 1 to 10000; the
//     server timeouts are greater than 0 and at most 1h;
//     server.max_connections is 1 to 1000000.
//   - tls.listen is required when tls is present (a listen address, not
//     the same as listen unless both ask for any free port, ":0"); tls.certificates lists at least one {cert,
//     key} pair of readable PEM files that form a valid key pair, each
//     pair once; tls.min_version is "1.2" or "1.3".
//   - trusted_proxies lists CIDR prefixes without host bits set, each
//     once, at most 1000.
//   - A route's max_body is 0 (no body accepted) to 1TiB.
//   - An upstream's protocol is http1 or h2.
//   - There is at least one route. Route and upstream names are 1 to 64
//     letters, digits, '.', '_' or '-', starting with a letter or digit;
//     route names are unique. A route's upstream is required and must
//     exist. match.path_prefix begins with "/" and has no whitespace,
//     control character, '?' or '#'. match.host is a host name or IP
//     address, without port.
//   - strict.validate is none or json; strict.buffer is 1 byte to 1GiB.
//   - upgrade.protocols is required when upgrade is present: tokens (RFC
//     9110), listed once each (case-insensitively), never h2c.
//     upgrade.idle is greater than 0 and at most 24h.
//   - A target url is http://host[:port] or https://host[:port] (port
//     1-65535), without user info, path (other than "/"), query or
//     fragment; an upstream lists a target once. An upstream may have no
//     targets (it answers 503) and need not be used by a route.
//   - tls requires an https target; tls.ca_file is a readable regular file
//     holding at least one PEM certificate; tls.server_name is a host name
//     or IP address.
//   - resolver is IP:port.
//   - Timeouts are greater than 0; idle and pool_idle are at most 24h.
//   - response_head_limit is 1KiB to 1MiB; max_idle_per_target is 0 to
//     100000.
//   - A target's weight is 1 to 1000.
//   - balance.policy is round_robin, least_request or consistent_hash.
//     balance.hash_on is required for consistent_hash and not allowed
//     otherwise: header:NAME or cookie:NAME, NAME a token (RFC 9110).
//     balance.hash_load_factor is 1 to 10, and only for consistent_hash.
//   - health.active.path is required, begins with "/" and has no
//     whitespace, control character, non-ASCII character or '#';
//     health.active.host is host[:port] (IPv6 in brackets). interval is
//     100ms to 1h; timeout is greater than 0 and less than interval;
//     expect is "NNN" or "NNN-NNN", 100 <= lo <= hi <= 599; the thresholds
//     are 1 to 100.
//   - health.passive.consecutive_failures is 0 to 1000; base_ejection is
//     greater than 0; max_ejection is base_ejection to 24h;
//     max_ejected_percent is 0 to 100.
//   - limits.max_concurrent, max_pending and target_max_concurrent are 0
//     or more; max_pending requires max_concurrent; pending_timeout is
//     greater than 0 and at most 1m.
//   - retry.attempts is 1 to 10. per_try_timeout and timeout are 0 (the
//     default) or more; when both are set, timeout is greater than
//     per_try_timeout. backoff is greater than 0; max_backoff is backoff
//     to 1m. on_status lists distinct 5xx statuses. body_buffer is 0 to
//     64MiB; budget_ratio is 0 to 1; budget_min_per_second is 0 to 10000.
func (c *Config) Validate() error {
	v := validator{file: c.File}
	v.config(c)
	return v.errs.result()
}

// validator collects the problems of a configuration.
type validator struct {
	file string
	// lines maps field paths to lines, as recorded by the decoder; nil
	// for a configuration built in code.
	lines map[string]int
	// broken reports whether the decoder already reported a problem with
	// the field at a path (or a parent); nil for a configuration built in
	// code. Problems of broken fields are not repeated.
	broken func(path string) bool
	// given reports whether the field at a path was written in the file
	// with a value; nil for a configuration built in code.
	given func(path string) bool
	errs  Errors
}

// line returns the line of the field at path, or fallback.
func (v *validator) line(path string, fallback int) int {
	if l, ok := v.lines[path]; ok {
		return l
	}
	return fallback
}

// fail records a problem with the field at path; line is the fallback
// when the decoder did not record the field (it is absent).
func (v *validator) fail(path string, line int, format string, args ...any) {
	if v.broken != nil && v.broken(path) {
		return
	}
	v.errs.add(v.file, v.line(path, line), path, fmt.Sprintf(format, args...))
}

// broke reports whether the decoder reported a problem with the field at
// path (or a parent); its value is then not a basis for checking others.
func (v *validator) broke(path string) bool {
	return v.broken != nil && v.broken(path)
}

func (v *validator) config(c *Config) {
	// top is the line of a top-level key absent from the file.
	top := 0
	if v.lines != nil {
		top = 1
	}
	if r := listenProblem(c.Listen); r != "" {
		v.fail("listen", top, "%s", r)
	}
	if c.Admin != nil {
		v.admin(c.Admin, v.line("admin", top))
	}
	v.log(&c.Log, v.line("log", top))
	switch d := c.DrainTimeout; {
	case d <= 0:
		v.fail("drain_timeout", top, "must be greater than 0, got %s", d)
	case d > maxDrainTimeout:
		v.fail("drain_timeout", top, "must be at most 10m, got %s", d)
	}
	if len(c.Routes) == 0 {
		v.fail("routes", top, "at least one route is required")
	}
	names := map[string]int{}
	for i := range c.Routes {
		v.route(c, i, names)
	}
	upstreams := make([]string, 0, len(c.Upstreams))
	for name := range c.Upstreams {
		upstreams = append(upstreams, name)
	}
	slices.Sort(upstreams)
	for _, name := range upstreams {
		v.upstream(name, c.Upstreams[name])
	}
	if c.Tracing != nil {
		v.tracing(c.Tracing, v.line("tracing", top))
	}
	v.server(&c.Server, v.line("server", top))
	if c.TLS != nil {
		v.tls(c, v.line("tls", top))
	}
	v.prefixes("trusted_proxies", c.TrustedProxies, v.line("trusted_proxies", top), maxTrustedProxies)
}

// server checks the downstream server's limits, whose key is at line.
func (v *validator) server(s *Server, line int) {
	if n := s.MaxRequestLine; n < minServerLine || n > maxServerLine {
		v.fail("server.max_request_line", line, "must be between 256 bytes and 1MiB, got %s", n)
	}
	if n := s.MaxHeaderBytes; n < minServerHeader || n > maxServerHeader {
		v.fail("server.max_header_bytes", line, "must be between 1KiB and 1MiB, got %s", n)
	}
	if n := s.MaxHeaderFields; n < 1 || n > maxServerFields {
		v.fail("server.max_header_fields", line, "must be between 1 and %d, got %d", maxServerFields, n)
	}
	for _, d := range []struct {
		key string
		val Duration
	}{
		{"read_header_timeout", s.ReadHeaderTimeout},
		{"body_timeout", s.BodyTimeout},
		{"write_timeout", s.WriteTimeout},
		{"idle_timeout", s.IdleTimeout},
	} {
		if d.val <= 0 || d.val > maxServerTimeout {
			v.fail("server."+d.key, line, "must be greater than 0 and at most 1h, got %s", d.val)
		}
	}
	if n := s.MaxConnections; n < 1 || n > maxServerConns {
		v.fail("server.max_connections", line, "must be between 1 and %d, got %d", maxServerConns, n)
	}
}

// tls checks the TLS listener, whose key is at line.
func (v *validator) tls(c *Config, line int) {
	t := c.TLS
	switch {
	case t.Listen == "":
		v.fail("tls.listen", line, "required when tls is present")
	case listenProblem(t.Listen) != "":
		v.fail("tls.listen", line, "%s", listenProblem(t.Listen))
	case t.Listen == c.Listen && !strings.HasSuffix(t.Listen, ":0"):
		v.fail("tls.listen", line, "%q is also listen: the TLS listener needs an address of its own", t.Listen)
	}
	if len(t.Certificates) == 0 {
		v.fail("tls.certificates", line, "at least one {cert, key} pair is required")
	}
	cp := "tls.certificates"
	seen := map[Certificate]int{}
	for i, cert := range t.Certificates {
		ip := index(cp, i)
		l := v.line(ip, v.line(cp, line))
		if cert.Cert == "" || cert.Key == "" {
			if cert.Cert == "" {
				v.fail(ip+".cert", l, "required")
			}
			if cert.Key == "" {
				v.fail(ip+".key", l, "required")
			}
			continue
		}
		if first, dup := seen[cert]; dup {
			v.fail(ip, l, "duplicate certificate (same as %s)", index(cp, first))
			continue
		}
		seen[cert] = i
		if why := KeyPairProblem(cert.Cert, cert.Key); why != "" {
			v.fail(ip, l, "%s", why)
		}
	}
	switch t.MinVersion {
	case "1.2", "1.3":
	default:
		v.fail("tls.min_version", line, `must be "1.2" or "1.3", got %q`, t.MinVersion)
	}
}

// KeyPairProblem checks that certFile and keyFile are readable regular PEM
// files of at most 1MiB that form a valid key pair, and says why not ("" when
// they do). The TLS listener loads them the same way.
func KeyPairProblem(certFile, keyFile string) string {
	var data [2][]byte
	for i, f := range []string{certFile, keyFile} {
		b, why := readSmallFile(f, maxCertFileSize)
		if why != "" {
			return why
		}
		data[i] = b
	}
	if _, err := tls.X509KeyPair(data[0], data[1]); err != nil {
		return fmt.Sprintf("%q and %q are not a usable certificate and key: %v", certFile, keyFile, err)
	}
	return ""
}

// readSmallFile reads a regular file of at most limit bytes, or says why it
// cannot.
func readSmallFile(path string, limit int64) ([]byte, string) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Sprintf("cannot read %q: %s", path, pathReason(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Sprintf("cannot read %q: %s", path, pathReason(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Sprintf("%q is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	switch {
	case err != nil:
		return nil, fmt.Sprintf("cannot read %q: %s", path, pathReason(err))
	case int64(len(data)) > limit:
		return nil, fmt.Sprintf("%q is larger than %s", path, Size(limit))
	}
	return data, ""
}

// prefixes checks a list of CIDR prefixes at path whose key is at line.
func (v *validator) prefixes(path string, list []string, line, max int) {
	if len(list) > max {
		v.fail(path, line, "at most %d networks, got %d", max, len(list))
	}
	seen := map[netip.Prefix]int{}
	for i, s := range list {
		p, why := prefixProblem(s)
		if why != "" {
			v.fail(index(path, i), line, "%s", why)
			continue
		}
		if first, dup := seen[p]; dup {
			v.fail(index(path, i), line, "duplicate network %s (same as %s)", p, index(path, first))
			continue
		}
		seen[p] = i
	}
}

// admin checks the admin listener, whose key is at line.
func (v *validator) admin(a *Admin, line int) {
	listenOK := false
	if a.Listen == "" {
		v.fail("admin.listen", line, "required when admin is present")
	} else if r := listenProblem(a.Listen); r != "" {
		v.fail("admin.listen", line, "%s", r)
	} else {
		listenOK = !v.broke("admin.listen")
	}
	// An explicit token: "" is a mistake (an unset variable in a
	// template, say), not a way to turn authentication off.
	if a.Token != "" || (v.given != nil && v.given("admin.token")) {
		if why := tokenProblem(a.Token); why != "" {
			v.fail("admin.token", line, "%s", why)
		}
	} else if listenOK && !loopbackListen(a.Listen) {
		v.fail("admin.token", line, "admin on a non-loopback address needs a token")
	}
	if n := a.Failures; n < 1 || n > maxAdminFailures {
		v.fail("admin.failures", line, "must be between 1 and %d, got %d", maxAdminFailures, n)
	}
}

// log checks the log settings, whose key is at line.
func (v *validator) log(l *Log, line int) {
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		v.fail("log.level", line, "must be debug, info, warn or error, got %q", l.Level)
	}
	if why := logOutputProblem(l.Output); why != "" {
		v.fail("log.output", line, "%s", why)
	}
	if s := l.Sample; s != nil && !(*s >= 0 && *s <= 1) {
		v.fail("log.sample", line, "must be between 0 and 1, got %g", *s)
	}
}

// tracing checks the tracing settings, whose key is at line.
func (v *validator) tracing(t *Tracing, line int) {
	if t.OTLPEndpoint == "" {
		v.fail("tracing.otlp_endpoint", line, "required when tracing is present: the OTLP/HTTP collector's host:port, e.g. 127.0.0.1:4318")
	} else if why := endpointProblem(t.OTLPEndpoint); why != "" {
		v.fail("tracing.otlp_endpoint", line, "%s", why)
	}
	if why := serviceNameProblem(t.ServiceName); why != "" {
		v.fail("tracing.service_name", line, "%s", why)
	}
	if s := t.Sample; s != nil && !(*s >= 0 && *s <= 1) {
		v.fail("tracing.sample", line, "must be between 0 and 1, got %g", *s)
	}
	tp := "tracing.trust_traceparent"
	v.prefixes(tp, t.TrustTraceparent, v.line(tp, line), maxTrustedProxies)
}

// route checks c.Routes[i]; names maps the route names seen to their index.
func (v *validator) route(c *Config, i int, names map[string]int) {
	r := &c.Routes[i]
	p := index("routes", i)
	switch first, dup := names[r.Name]; {
	case r.Name == "":
		v.fail(p+".name", r.Line, "required")
	case !validName(r.Name):
		v.fail(p+".name", r.Line, "invalid route name %q: %s", r.Name, nameRule)
	case dup:
		v.fail(p+".name", r.Line, "duplicate route name %q (first at line %d, %s)", r.Name, c.Routes[first].Line, index("routes", first))
	default:
		names[r.Name] = i
	}
	if r.Upstream == "" {
		v.fail(p+".upstream", r.Line, "required")
	} else if _, ok := c.Upstreams[r.Upstream]; !ok && (v.broken == nil || !v.broken(join("upstreams", r.Upstream))) {
		v.fail(p+".upstream", r.Line, "route names missing upstream %q", r.Upstream)
	}
	if pp := r.Match.PathPrefix; pp != "" {
		if why := pathPrefixProblem(pp); why != "" {
			v.fail(p+".match.path_prefix", v.line(p+".match", r.Line), "%s", why)
		}
	}
	if h := r.Match.Host; h != "" && !validHost(h) {
		v.fail(p+".match.host", v.line(p+".match", r.Line), "%q is not a valid host name or IP address (write it without port or scheme)", h)
	}
	if s := r.Strict; s != nil {
		sp := p + ".strict"
		switch s.Validate {
		case ValidateNone, ValidateJSON:
		default:
			v.fail(sp+".validate", v.line(sp, r.Line), "must be none or json, got %q", s.Validate)
		}
		if s.Buffer <= 0 || s.Buffer > maxStrictBuffer {
			v.fail(sp+".buffer", v.line(sp, r.Line), "must be between 1 byte and 1GiB, got %s", s.Buffer)
		}
	}
	if u := r.Upgrade; u != nil {
		v.upgrade(u, p+".upgrade", r.Line)
	}
	v.retry(&r.Retry, p+".retry", r.Line)
	if b := r.MaxBody; b < 0 || b > maxRouteBody {
		v.fail(p+".max_body", r.Line, "must be between 0 and 1TiB, got %s", b)
	}
}

// upgrade checks the protocol upgrade settings at path up of a route at
// line.
func (v *validator) upgrade(u *Upgrade, up string, line int) {
	at := v.line(up, line)
	pp := up + ".protocols"
	if len(u.Protocols) == 0 {
		v.fail(pp, at, "required when upgrade is present, e.g. [websocket]")
	}
	seen := map[string]int{}
	for i, proto := range u.Protocols {
		ip := index(pp, i)
		key := strings.ToLower(proto)
		switch first, dup := seen[key]; {
		case !validToken(proto):
			v.fail(ip, v.line(pp, at), "%q is not a valid protocol: write its name only, a token of letters, digits and !#$%%&'*+-.^_`|~", proto)
		case key == "h2c":
			v.fail(ip, v.line(pp, at), "h2c is never forwarded")
		case dup:
			v.fail(ip, v.line(pp, at), "duplicate protocol %q (same as %s)", key, index(pp, first))
		default:
			seen[key] = i
		}
	}
	switch d := u.Idle; {
	case d <= 0:
		v.fail(up+".idle", at, "must be greater than 0, got %s", d)
	case d > maxIdleTimeout:
		v.fail(up+".idle", at, "must be at most 24h, got %s", d)
	}
}

// retry checks the retry settings at path rp of a route at line.
func (v *validator) retry(rt *Retry, rp string, line int) {
	at := v.line(rp, line)
	if n := rt.Attempts; n < 1 || n > maxRetryAttempts {
		v.fail(rp+".attempts", at, "must be between 1 and %d (1 turns retries off), got %d", maxRetryAttempts, n)
	}
	if rt.PerTryTimeout < 0 {
		v.fail(rp+".per_try_timeout", at, "must not be negative, got %s", rt.PerTryTimeout)
	}
	switch {
	case rt.Timeout < 0:
		v.fail(rp+".timeout", at, "must not be negative, got %s", rt.Timeout)
	case rt.Timeout > 0 && rt.PerTryTimeout > 0 && rt.Timeout <= rt.PerTryTimeout:
		v.fail(rp+".timeout", at, "must be greater than per_try_timeout (%s), got %s", rt.PerTryTimeout, rt.Timeout)
	}
	backoff := rt.Backoff > 0
	if !backoff {
		v.fail(rp+".backoff", at, "must be greater than 0, got %s", rt.Backoff)
	}
	switch mb := rt.MaxBackoff; {
	case mb <= 0:
		v.fail(rp+".max_backoff", at, "must be greater than 0, got %s", mb)
	case mb > maxRetryBackoff:
		v.fail(rp+".max_backoff", at, "must be at most 1m, got %s", mb)
	case backoff && mb < rt.Backoff:
		v.fail(rp+".max_backoff", at, "must be at least backoff (%s), got %s", rt.Backoff, mb)
	}
	seen := map[int]int{}
	for i, status := range rt.OnStatus {
		sp := index(rp+".on_status", i)
		switch first, dup := seen[status]; {
		case status >= 400 && status <= 499:
			v.fail(sp, v.line(rp+".on_status", at), "%d is not retried: only 5xx statuses (500-599) are; a 4xx answers the request itself and would fail again on another target", status)
		case status < 500 || status > 599:
			v.fail(sp, v.line(rp+".on_status", at), "must be a 5xx status (500-599), got %d", status)
		case dup:
			v.fail(sp, v.line(rp+".on_status", at), "duplicate status %d (same as %s)", status, index(rp+".on_status", first))
		default:
			seen[status] = i
		}
	}
	if b := rt.BodyBuffer; b < 0 || b > maxRetryBodyBuffer {
		v.fail(rp+".body_buffer", at, "must be between 0 and %s, got %s", maxRetryBodyBuffer, b)
	}
	if r := rt.BudgetRatio; !(r >= 0 && r <= 1) {
		v.fail(rp+".budget_ratio", at, "must be between 0 and 1, got %g", r)
	}
	if m := rt.BudgetMinPerSecond; m < 0 || m > maxBudgetMinPerSecond {
		v.fail(rp+".budget_min_per_second", at, "must be between 0 and %d, got %d", maxBudgetMinPerSecond, m)
	}
}

// upstream checks the upstream called name.
func (v *validator) upstream(name string, u *Upstream) {
	p := join("upstreams", name)
	if u == nil {
		v.fail(p, 0, "must not be nil")
		return
	}
	if !validName(name) {
		v.fail(p, u.Line, "invalid upstream name %q: %s", name, nameRule)
	}
	switch u.Protocol {
	case ProtocolHTTP1, ProtocolH2:
	default:
		v.fail(p+".protocol", u.Line, "must be http1 or h2, got %q", u.Protocol)
	}
	https := false
	seen := map[string]int{}
	for j, t := range u.Targets {
		if w := t.Weight; w < 1 || w > maxWeight {
			v.fail(index(p+".targets", j)+".weight", v.line(index(p+".targets", j), t.Line), "must be between 1 and %d, got %d", maxWeight, w)
		}
		tp := index(p+".targets", j) + ".url"
		key, scheme, why := targetProblem(t.URL)
		if why != "" {
			v.fail(tp, v.line(index(p+".targets", j), t.Line), "%s", why)
			continue
		}
		https = https || scheme == "https"
		if first, dup := seen[key]; dup {
			v.fail(tp, v.line(index(p+".targets", j), t.Line), "duplicate target (same as %s)", index(p+".targets", first))
			continue
		}
		seen[key] = j
	}
	if tls := u.TLS; tls != nil {
		tp := p + ".tls"
		if !https {
			v.fail(tp, u.Line, "tls set but no https target")
		}
		if tls.CAFile != "" {
			if why := caProblem(tls.CAFile); why != "" {
				v.fail(tp+".ca_file", v.line(tp, u.Line), "%s", why)
			}
		}
		if sn := tls.ServerName; sn != "" && !validHost(sn) {
			v.fail(tp+".server_name", v.line(tp, u.Line), "%q is not a valid DNS name or IP address", sn)
		}
	}
	if u.Resolver != "" {
		if why := resolverProblem(u.Resolver); why != "" {
			v.fail(p+".resolver", u.Line, "%s", why)
		}
	}
	tp := p + ".timeouts"
	for _, d := range []struct {
		key string
		val Duration
		max Duration
	}{
		{"connect", u.Timeouts.Connect, 0},
		{"response_header", u.Timeouts.ResponseHeader, 0},
		{"idle", u.Timeouts.Idle, maxIdleTimeout},
		{"pool_idle", u.Timeouts.PoolIdle, maxIdleTimeout},
	} {
		switch {
		case d.val <= 0:
			v.fail(tp+"."+d.key, v.line(tp, u.Line), "must be greater than 0, got %s", d.val)
		case d.max > 0 && d.val > d.max:
			v.fail(tp+"."+d.key, v.line(tp, u.Line), "must be at most 24h, got %s", d.val)
		}
	}
	if l := u.ResponseHeadLimit; l < minResponseHead || l > maxResponseHead {
		v.fail(p+".response_head_limit", u.Line, "must be between 1KiB and 1MiB, got %s", l)
	}
	if m := u.MaxIdlePerTarget; m < 0 || m > maxIdlePerTarget {
		v.fail(p+".max_idle_per_target", u.Line, "must be between 0 and %d, got %d", maxIdlePerTarget, m)
	}
	v.balance(&u.Balance, p+".balance", u.Line)
	if a := u.Health.Active; a != nil {
		v.active(a, p+".health.active", v.line(p+".health", u.Line))
	}
	v.passive(&u.Health.Passive, p+".health.passive", v.line(p+".health", u.Line))
	v.limits(&u.Limits, p+".limits", u.Line)
}

// balance checks the balancing settings at path bp of an upstream at line.
func (v *validator) balance(b *Balance, bp string, line int) {
	at := v.line(bp, line)
	hash := b.Policy == PolicyConsistentHash
	// known: the policy is valid, so keys that do not apply to it are
	// reported as such.
	known := false
	switch b.Policy {
	case PolicyRoundRobin, PolicyLeastRequest, PolicyConsistentHash:
		known = !v.broke(bp + ".policy")
	default:
		v.fail(bp+".policy", at, "must be round_robin, least_request or consistent_hash, got %q", b.Policy)
	}
	switch {
	case b.HashOn == "" && hash:
		v.fail(bp+".hash_on", at, "required for policy consistent_hash: write header:NAME or cookie:NAME")
	case b.HashOn == "":
	case known && !hash:
		v.fail(bp+".hash_on", at, "only used by policy consistent_hash, not %s", b.Policy)
	default:
		if why := hashOnProblem(b.HashOn); why != "" {
			v.fail(bp+".hash_on", at, "%s", why)
		}
	}
	if f := b.HashLoadFactor; f != 0 || hash {
		switch {
		case known && !hash:
			v.fail(bp+".hash_load_factor", at, "only used by policy consistent_hash, not %s", b.Policy)
		case !(f >= minHashLoadFactor && f <= maxHashLoadFactor):
			v.fail(bp+".hash_load_factor", at, "must be between %d and %d, got %g", minHashLoadFactor, maxHashLoadFactor, f)
		}
	}
}

// active checks the active health check at path ap, whose parent is at
// line.
func (v *validator) active(a *ActiveHealth, ap string, line int) {
	at := v.line(ap, line)
	if a.Path == "" {
		v.fail(ap+".path", at, "required when active is present, e.g. /healthz")
	} else if why := probePathProblem(a.Path); why != "" {
		v.fail(ap+".path", at, "%s", why)
	}
	if a.Host != "" {
		if why := probeHostProblem(a.Host); why != "" {
			v.fail(ap+".host", at, "%s", why)
		}
	}
	interval := a.Interval >= minActiveInterval && a.Interval <= maxActiveInterval
	if !interval {
		v.fail(ap+".interval", at, "must be between 100ms and 1h, got %s", a.Interval)
	}
	switch {
	case a.Timeout <= 0:
		v.fail(ap+".timeout", at, "must be greater than 0, got %s", a.Timeout)
	case interval && !v.broke(ap+".interval") && a.Timeout >= a.Interval:
		v.fail(ap+".timeout", at, "must be less than interval (%s), got %s", a.Interval, a.Timeout)
	}
	if why := expectProblem(a.Expect); why != "" {
		v.fail(ap+".expect", at, "%s", why)
	}
	for _, t := range []struct {
		key string
		val int
	}{
		{"healthy_threshold", a.HealthyThreshold},
		{"unhealthy_threshold", a.UnhealthyThreshold},
	} {
		if t.val < 1 || t.val > maxThreshold {
			v.fail(ap+"."+t.key, at, "must be between 1 and %d, got %d", maxThreshold, t.val)
		}
	}
}

// passive checks the passive health settings at path pp, whose parent is
// at line.
func (v *validator) passive(ps *PassiveHealth, pp string, line int) {
	at := v.line(pp, line)
	if n := ps.ConsecutiveFailures; n < 0 || n > maxConsecutiveFailures {
		v.fail(pp+".consecutive_failures", at, "must be between 0 (off) and %d, got %d", maxConsecutiveFailures, n)
	}
	base := ps.BaseEjection > 0 && !v.broke(pp+".base_ejection")
	if ps.BaseEjection <= 0 {
		v.fail(pp+".base_ejection", at, "must be greater than 0, got %s", ps.BaseEjection)
	}
	switch m := ps.MaxEjection; {
	case m <= 0:
		v.fail(pp+".max_ejection", at, "must be greater than 0, got %s", m)
	case m > maxEjection:
		v.fail(pp+".max_ejection", at, "must be at most 24h, got %s", m)
	case base && m < ps.BaseEjection:
		v.fail(pp+".max_ejection", at, "must be at least base_ejection (%s), got %s", ps.BaseEjection, m)
	}
	if n := ps.MaxEjectedPercent; n < 0 || n > 100 {
		v.fail(pp+".max_ejected_percent", at, "must be between 0 and 100, got %d", n)
	}
}

// limits checks the concurrency limits at path lp of an upstream at line.
func (v *validator) limits(l *Limits, lp string, line int) {
	at := v.line(lp, line)
	for _, n := range []struct {
		key string
		val int
	}{
		{"max_concurrent", l.MaxConcurrent},
		{"max_pending", l.MaxPending},
		{"target_max_concurrent", l.TargetMaxConcurrent},
	} {
		if n.val < 0 {
			v.fail(lp+"."+n.key, at, "must not be negative (0 means no limit), got %d", n.val)
		}
	}
	if l.MaxPending > 0 && l.MaxConcurrent == 0 && !v.broke(lp+".max_concurrent") {
		v.fail(lp+".max_pending", at, "requires max_concurrent: requests wait only for a concurrency limit")
	}
	switch d := l.PendingTimeout; {
	case d <= 0:
		v.fail(lp+".pending_timeout", at, "must be greater than 0, got %s", d)
	case d > maxPendingTimeout:
		v.fail(lp+".pending_timeout", at, "must be at most 1m, got %s", d)
	}
}

// nameRule describes valid route and upstream names.
const nameRule = "use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"

// validName reports whether s is a valid route or upstream name, matching
// ^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$.
func validName(s string) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// validHostname reports whether s is a DNS host name: dot-separated labels
// of 1 to 63 letters, digits, '-' or '_' (used by container platforms), not
// starting or ending with '-', at most 253 bytes, and not all-numeric in
// its last label (which would be a mistyped IPv4 address). A trailing dot
// is not accepted.
func validHostname(s string) bool {
	if s == "" || len(s) > maxHostnameLen {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > maxHostnameLabelLen || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := range len(l) {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return strings.TrimLeft(labels[len(labels)-1], "0123456789") != ""
}

// validHost reports whether s is a host name or an IP address without zone.
func validHost(s string) bool {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Zone() == ""
	}
	return validHostname(s)
}

// portProblem checks a numeric port between min and 65535; it returns ""
// when the port is valid, or the reason.
func portProblem(port string, min int) string {
	if port == "" {
		return "missing port"
	}
	n, err := strconv.Atoi(port)
	if err != nil || strings.TrimLeft(port, "0123456789") != "" || len(port) > 5 {
		return fmt.Sprintf("port %q is not a number", port)
	}
	if n < min || n > 65535 {
		return fmt.Sprintf("port %d out of range (%d-65535)", n, min)
	}
	return ""
}

// splitHostPort splits s like [net.SplitHostPort], returning the reason
// when it fails.
func splitHostPort(s string) (host, port, why string) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		reason := err.Error()
		if ae, ok := errors.AsType[*net.AddrError](err); ok {
			reason = ae.Err
		}
		return "", "", fmt.Sprintf("%q is not host:port (%s)", s, reason)
	}
	return host, port, ""
}

// listenProblem checks a listen address: host:port, host empty, an IP
// address or a host name, port 0-65535.
func listenProblem(s string) string {
	host, port, why := splitHostPort(s)
	if why != "" {
		return why
	}
	if why := portProblem(port, 0); why != "" {
		return why
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil && !validHostname(host) {
			return fmt.Sprintf("host %q is not an IP address or host name", host)
		}
	}
	return ""
}

// resolverProblem checks a DNS server address: IP:port, port 1-65535.
func resolverProblem(s string) string {
	host, port, why := splitHostPort(s)
	if why != "" {
		return why + ", e.g. 10.0.0.53:53"
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Sprintf("resolver must be an IP address, got %q", host)
	}
	return portProblem(port, 1)
}

// pathPrefixProblem checks match.path_prefix: a path without query.
func pathPrefixProblem(s string) string {
	return pathProblem(s, func(r rune) string {
		if r == '?' {
			return "must not contain '?' (the query is not matched)"
		}
		return ""
	})
}

// pathProblem checks a path that begins with "/" and holds no '#',
// whitespace, control characters or invalid UTF-8; rule adds a check per
// character and returns its reason, or "".
func pathProblem(s string, rule func(r rune) string) string {
	if !strings.HasPrefix(s, "/") {
		return fmt.Sprintf("must begin with \"/\", got %q", s)
	}
	for _, r := range s {
		why := rule(r)
		switch {
		case why != "":
		case r == '#':
			why = "must not contain '#'"
		case unicode.IsSpace(r):
			why = "must not contain spaces"
		case unicode.IsControl(r) || r == unicode.ReplacementChar:
			why = "must not contain control characters or invalid UTF-8"
		}
		if why != "" {
			return fmt.Sprintf("%s, got %q", why, s)
		}
	}
	return ""
}

// targetProblem checks a target URL. It returns the reason it is invalid,
// or its scheme and a key that is equal for URLs naming the same target
// (scheme, lower-cased host, port with the scheme's default).
func targetProblem(raw string) (key, scheme, why string) {
	const form = "write http://host[:port] or https://host[:port]"
	if raw == "" {
		return "", "", "required"
	}
	u, err := url.Parse(raw)
	if err != nil {
		// The url package's error quotes the whole URL, which may hold a
		// password: keep only its reason.
		reason := err.Error()
		if ue, ok := errors.AsType[*url.Error](err); ok {
			reason = ue.Err.Error()
		}
		return "", "", "invalid URL: " + reason + "; " + form
	}
	switch {
	case u.Scheme == "":
		return "", "", "missing scheme: " + form
	case u.Scheme != "http" && u.Scheme != "https":
		return "", "", fmt.Sprintf("unsupported scheme %q: %s", u.Scheme, form)
	case u.Opaque != "":
		return "", "", "missing \"//\" after the scheme: " + form
	case u.User != nil:
		return "", "", "must not contain user info (credentials)"
	case u.Host == "" || u.Hostname() == "":
		return "", "", "missing host: " + form
	case !validHost(strings.TrimSuffix(u.Hostname(), ".")) && !validHostZone(u.Hostname()):
		return "", "", fmt.Sprintf("host %q is not a valid host name or IP address", u.Hostname())
	case u.Path != "" && u.Path != "/":
		return "", "", fmt.Sprintf("must not have a path, got %q (routes forward the request path as is)", u.EscapedPath())
	case u.RawQuery != "" || u.ForceQuery:
		return "", "", "must not have a query"
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "", "", "must not have a fragment"
	}
	port := u.Port()
	if strings.HasSuffix(u.Host, ":") {
		return "", "", "empty port: " + form
	}
	if port != "" {
		if why := portProblem(port, 1); why != "" {
			return "", "", why
		}
	} else if u.Scheme == "https" {
		port = "443"
	} else {
		port = "80"
	}
	n, _ := strconv.Atoi(port)
	return u.Scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), strconv.Itoa(n)), u.Scheme, ""
}

// validHostZone reports whether s is an IPv6 address with a zone, valid in
// a target URL (http://[fe80::1%25eth0]:8080).
func validHostZone(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is6() && a.Zone() != ""
}

// caProblem checks that path is a readable regular file holding at least
// one PEM certificate.
func caProblem(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("cannot read %q: %s", path, pathReason(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("cannot read %q: %s", path, pathReason(err))
	}
	if !fi.Mode().IsRegular() {
		return fmt.Sprintf("%q is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxCAFileSize+1))
	switch {
	case err != nil:
		return fmt.Sprintf("cannot read %q: %s", path, pathReason(err))
	case len(data) > maxCAFileSize:
		return fmt.Sprintf("%q is larger than 16MiB", path)
	case !x509.NewCertPool().AppendCertsFromPEM(data):
		return fmt.Sprintf("%q holds no PEM certificate", path)
	}
	return ""
}

// pathReason returns the reason of a file error without the path.
func pathReason(err error) string {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

// splitHashOn splits "header:NAME" or "cookie:NAME", NAME a token; ok is
// false for any other form.
func splitHashOn(s string) (kind, name string, ok bool) {
	kind, name, _ = strings.Cut(s, ":")
	if (kind != "header" && kind != "cookie") || !validToken(name) {
		return "", "", false
	}
	return kind, name, true
}

// parseExpect parses "NNN" or "NNN-NNN", each a three-digit status
// between 100 and 599 with lo <= hi.
func parseExpect(s string) (lo, hi int, ok bool) {
	status := func(s string) (int, bool) {
		if len(s) != 3 || strings.Trim(s, "0123456789") != "" {
			return 0, false
		}
		n, err := strconv.Atoi(s)
		return n, err == nil && n >= 100 && n <= 599
	}
	first, second, ranged := strings.Cut(s, "-")
	lo, ok1 := status(first)
	hi, ok2 := lo, true
	if ranged {
		hi, ok2 = status(second)
	}
	if !ok1 || !ok2 || lo > hi {
		return 0, 0, false
	}
	return lo, hi, true
}

// validToken reports whether s is an RFC 9110 token (header field names;
// RFC 6265 cookie names are tokens too): one or more of the visible ASCII
// characters other than separators.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// hashOnProblem checks balance.hash_on: header:NAME or cookie:NAME, NAME a
// token.
func hashOnProblem(s string) string {
	kind, name, found := strings.Cut(s, ":")
	switch {
	case !found || (kind != "header" && kind != "cookie"):
		return fmt.Sprintf("must be header:NAME or cookie:NAME, got %q", s)
	case name == "":
		return fmt.Sprintf("missing the %s name after %q", kind, kind+":")
	case !validToken(name):
		return fmt.Sprintf("%q is not a valid %s name: use letters, digits and !#$%%&'*+-.^_`|~", name, kind)
	}
	return ""
}

// expectProblem checks health.active.expect as [parseExpect] reads it,
// saying what is wrong.
func expectProblem(s string) string {
	if _, _, ok := parseExpect(s); ok {
		return ""
	}
	lo, hi, ranged := strings.Cut(s, "-")
	if !ranged {
		hi = lo
	}
	digits := func(s string) bool { return len(s) == 3 && strings.Trim(s, "0123456789") == "" }
	if !digits(lo) || !digits(hi) {
		return fmt.Sprintf("must be a status such as \"204\" or a range such as \"200-399\", got %q", s)
	}
	if lo < "100" || lo > "599" || hi < "100" || hi > "599" {
		return fmt.Sprintf("statuses must be between 100 and 599, got %q", s)
	}
	return fmt.Sprintf("range %q is reversed: write the lower status first", s)
}

// probePathProblem checks health.active.path, a request-target: a path
// of visible ASCII characters (a query is allowed).
func probePathProblem(s string) string {
	return pathProblem(s, func(r rune) string {
		if r > '~' && r != unicode.ReplacementChar {
			return "must be ASCII (percent-encode other characters)"
		}
		return ""
	})
}

// probeHostProblem checks health.active.host, a Host header value:
// host[:port], the host a host name, an IPv4 address or an IPv6 address in
// brackets, the port 1-65535.
func probeHostProblem(s string) string {
	const form = "write host or host:port (an IPv6 address in brackets: [::1]:8080)"
	host := s
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.HasSuffix(s, "]") {
		_, port, why := splitHostPort(s)
		if why != "" {
			return why + "; " + form
		}
		if why := portProblem(port, 1); why != "" {
			return why
		}
		host = s[:i]
	}
	if inner, ok := strings.CutPrefix(host, "["); ok {
		inner, ok = strings.CutSuffix(inner, "]")
		if a, err := netip.ParseAddr(inner); !ok || err != nil || !a.Is6() || a.Zone() != "" {
			return fmt.Sprintf("%q is not an IPv6 address in brackets; %s", host, form)
		}
		return ""
	}
	if _, err := netip.ParseAddr(host); err != nil && !validHostname(host) {
		return fmt.Sprintf("host %q is not a valid host name or IP address; %s", host, form)
	}
	return ""
}

// loopbackListen reports whether the host of a valid listen address is a
// loopback IP address or localhost. An empty host (all interfaces) is not.
func loopbackListen(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// tokenProblem checks admin.token: at least 16 characters, each printable
// ASCII other than space. The reason never includes the token, which is a
// secret even when invalid.
func tokenProblem(token string) string {
	if token == "" {
		return "must not be empty: set a token of at least 16 characters, or leave the key out for none (loopback only)"
	}
	for i := range len(token) {
		switch c := token[i]; {
		case c == ' ':
			return fmt.Sprintf("must not contain spaces (character %d is one)", i+1)
		case c < '!' || c > '~':
			return fmt.Sprintf("must be printable ASCII without spaces (character %d is not)", i+1)
		}
	}
	if len(token) < minAdminToken {
		return fmt.Sprintf("must be at least %d characters, got %d", minAdminToken, len(token))
	}
	return ""
}

// logOutputProblem checks log.output: stderr, stdout or a file path whose
// folder exists and that is not itself a folder.
func logOutputProblem(output string) string {
	if !logFile(output) {
		if output == "" {
			return `must be stderr, stdout or a file path, got ""`
		}
		return ""
	}
	if strings.ContainsRune(output, 0) {
		return fmt.Sprintf("%q is not a valid file path", output)
	}
	dir := filepath.Dir(output)
	switch fi, err := os.Stat(dir); {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("folder %q does not exist", dir)
	case err != nil:
		return fmt.Sprintf("cannot use folder %q: %s", dir, pathReason(err))
	case !fi.IsDir():
		return fmt.Sprintf("%q is not a folder", dir)
	}
	if fi, err := os.Stat(output); err == nil && fi.IsDir() {
		return fmt.Sprintf("%q is a folder: name a file", output)
	}
	return ""
}

// endpointProblem checks tracing.otlp_endpoint: host:port, the host an IP
// address or a host name, the port 1-65535.
func endpointProblem(s string) string {
	const form = "write the collector's host:port, e.g. 127.0.0.1:4318"
	if strings.Contains(s, "://") || strings.Contains(s, "/") {
		return fmt.Sprintf("%q is not host:port: write the collector's host:port without scheme or path, e.g. 127.0.0.1:4318 (traces are POSTed to http://HOST:PORT/v1/traces)", s)
	}
	host, port, why := splitHostPort(s)
	if why != "" {
		return why + "; " + form
	}
	if host == "" {
		return fmt.Sprintf("missing host in %q: %s", s, form)
	}
	if _, err := netip.ParseAddr(host); err != nil && !validHostname(host) {
		return fmt.Sprintf("host %q is not an IP address or host name", host)
	}
	return portProblem(port, 1)
}

// serviceNameProblem checks tracing.service_name: 1 to 255 letters,
// digits, '.', '_' or '-'.
func serviceNameProblem(s string) string {
	const rule = "use 1 to 255 letters, digits, '.', '_' or '-'"
	if s == "" {
		return "must not be empty (leave the key out for the default, candor)"
	}
	if len(s) > maxServiceNameLen {
		return fmt.Sprintf("is %d characters long: %s", len(s), rule)
	}
	for i := range len(s) {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Sprintf("invalid service name %q: %s", s, rule)
		}
	}
	return ""
}

// prefixProblem parses a tracing.trust_traceparent entry, a CIDR prefix
// without host bits set.
func prefixProblem(s string) (netip.Prefix, string) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		if a, aerr := netip.ParseAddr(s); aerr == nil {
			return netip.Prefix{}, fmt.Sprintf("%q is an address, not a network: write %s/%d for it alone", s, a.WithZone(""), a.BitLen())
		}
		return netip.Prefix{}, fmt.Sprintf("%q is not a CIDR network such as 10.0.0.0/8 or 2001:db8::/32", s)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Sprintf("%q has host bits set: write %s for the network, or %s/%d for the address alone", s, m, p.Addr(), p.Addr().BitLen())
	}
	return p, ""
}
