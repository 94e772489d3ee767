package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
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
	minResponseHead     = Size(1 << 10) // 1KiB
	maxResponseHead     = Size(1 << 20) // 1MiB
	maxIdlePerTarget    = 100000
	maxCAFileSize       = 16 << 20
	maxNameLen          = 64
	maxHostnameLen      = 253
	maxHostnameLabelLen = 63
)

// Upstream returns the upstream called name, or nil.
func (c *Config) Upstream(name string) *Upstream { return c.Upstreams[name] }

// Validate checks a defaulted configuration (see [Config.ApplyDefaults])
// and returns an *[Errors] with every problem, or nil. Lines come from the
// Line fields of routes, upstreams and targets (0 elsewhere); [Parse]
// reports exact lines. Validate does not modify c, but reads tls.ca_file.
//
// The rules:
//   - listen and admin.listen are host:port with a numeric port 0-65535;
//     the host is empty (all interfaces), an IP address or a host name.
//     admin, when present, requires admin.listen.
//   - log.level is debug, info, warn or error.
//   - There is at least one route. Route and upstream names are 1 to 64
//     letters, digits, '.', '_' or '-', starting with a letter or digit;
//     route names are unique. A route's upstream is required and must
//     exist. match.path_prefix begins with "/" and has no whitespace,
//     control character, '?' or '#'. match.host is a host name or IP
//     address, without port.
//   - strict.validate is none or json; strict.buffer is 1 byte to 1GiB.
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
	errs   Errors
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
		if c.Admin.Listen == "" {
			v.fail("admin.listen", v.line("admin", top), "required when admin is present")
		} else if r := listenProblem(c.Admin.Listen); r != "" {
			v.fail("admin.listen", top, "%s", r)
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.fail("log.level", v.line("log", top), "must be debug, info, warn or error, got %q", c.Log.Level)
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
	https := false
	seen := map[string]int{}
	for j, t := range u.Targets {
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

// pathPrefixProblem checks match.path_prefix.
func pathPrefixProblem(s string) string {
	if !strings.HasPrefix(s, "/") {
		return fmt.Sprintf("must begin with \"/\", got %q", s)
	}
	for _, r := range s {
		switch {
		case r == '?':
			return fmt.Sprintf("must not contain '?' (the query is not matched), got %q", s)
		case r == '#':
			return fmt.Sprintf("must not contain '#', got %q", s)
		case unicode.IsSpace(r):
			return fmt.Sprintf("must not contain spaces, got %q", s)
		case unicode.IsControl(r) || r == unicode.ReplacementChar:
			return fmt.Sprintf("must not contain control characters or invalid UTF-8, got %q", s)
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
