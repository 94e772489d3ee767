// Package diagnose implements `candor diagnose`: it walks one request to an
// upstream target through the steps candor's gateway takes (DNS, TCP
// connect, TLS handshake and certificate checks, request, strict response
// parsing, body framing), prints each step with its timing and verdict, and
// on failure the cause id, the status candor would answer, and the cause's
// explanation and fix from the cause table (package
// [candor/internal/failure]), which is their single source.
//
// The steps run on candor's own HTTP/1.1 client through [upstream.Probe], so
// a response diagnose accepts is one the gateway accepts, and a failure has
// the cause the gateway would log. `candor explain` ([Explain]) prints one
// cause's page.
package diagnose

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"candor/internal/config"
	"candor/internal/failure"
	"candor/internal/upstream"
)

// DefaultBodyCap bounds the body diagnose reads (and discards) to check its
// framing; the rest of a larger body is not read.
const DefaultBodyCap = 1 << 20

// maxHeadFields bounds the number of response header fields, as the
// gateway does (internal/reload's maxHeadFields; not configurable).
const maxHeadFields = 256

// Options say what to probe and how. Build them with [FromURL] or
// [FromRoute].
type Options struct {
	// Title is what the first output line names: the URL, or the route.
	Title string
	// Target is the target URL, scheme://host[:port], or "" when the
	// route's upstream has no usable target.
	Target string
	// Path is the request-target in origin form, "/path?query".
	Path string
	// Host is the Host header sent. Default: the target's host[:port] as
	// written in its URL.
	Host string
	// Upstream holds the timeouts, resolver, TLS settings and head limits
	// the gateway would use for the target.
	Upstream upstream.Options
	// HeaderTimeout, when set, replaces Upstream.ResponseHeaderTimeout
	// (a route's retry.per_try_timeout).
	HeaderTimeout time.Duration
	// TimeoutNames name the settings the timeouts come from, for
	// messages: "timeouts.connect", or "--timeout".
	ConnectName, HeaderName, IdleName string
	// BodyCap bounds the body bytes read. Default: [DefaultBodyCap].
	BodyCap int64
	// Streaming is true for a route that streams responses, false for a
	// strict route, nil when unknown (a URL): it decides what a body
	// failure means to the client.
	Streaming *bool
	// Notes are printed after the title (e.g. a route in maintenance).
	Notes []string
}

// FromURL returns the Options for probing raw, an http or https URL with an
// optional path and query, with the gateway's default timeouts (connect 2s,
// response_header 30s, idle 60s) and head limit (64KiB).
func FromURL(raw string) (*Options, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid URL %q: %v", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("invalid URL %q: write http://host[:port][/path] or https://host[:port][/path]", raw)
	}
	if u.Host == "" || u.Hostname() == "" || u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return nil, fmt.Errorf("invalid URL %q: write %s://host[:port][/path], with no user info or fragment", raw, u.Scheme)
	}
	o := &Options{
		Title:  raw,
		Target: u.Scheme + "://" + u.Host,
		Path:   u.RequestURI(),
		Host:   u.Host,
		Upstream: upstream.Options{
			Name:                  u.Host,
			ConnectTimeout:        config.DefaultConnect.Std(),
			ResponseHeaderTimeout: config.DefaultResponseHeader.Std(),
			IdleTimeout:           config.DefaultIdle.Std(),
			HeadLimits:            upstream.Limits{Bytes: int(config.DefaultResponseHeadLimit), Fields: maxHeadFields},
		},
		ConnectName: "timeouts.connect, default",
		HeaderName:  "timeouts.response_header, default",
		IdleName:    "timeouts.idle, default",
		BodyCap:     DefaultBodyCap,
	}
	if o.Path == "" {
		o.Path = "/"
	}
	if err := checkTarget(o); err != nil {
		return nil, fmt.Errorf("invalid URL %q: %v", raw, err)
	}
	return o, nil
}

// checkTarget reports a target URL the upstream client does not take (an
// invalid port, say).
func checkTarget(o *Options) error {
	if o.Target == "" {
		return nil
	}
	p, err := upstream.NewProbe(o.Upstream, o.Target)
	if err != nil {
		return err
	}
	p.Close()
	return nil
}

// FromRoute returns the Options for probing route's upstream as cfg sets it
// up: its first target that is not drained, its timeouts (and the route's
// retry.per_try_timeout), TLS settings, resolver and response_head_limit.
// path is the request-target; "" means the route's path_prefix, or "/".
// The Host sent is the route's match.host when set, else the target's.
// An upstream with no usable target gives Options with an empty Target,
// which [Run] reports as no_healthy_upstream.
func FromRoute(cfg *config.Config, route, path string) (*Options, error) {
	var rt *config.Route
	names := make([]string, 0, len(cfg.Routes))
	for i := range cfg.Routes {
		names = append(names, cfg.Routes[i].Name)
		if cfg.Routes[i].Name == route {
			rt = &cfg.Routes[i]
		}
	}
	if rt == nil {
		return nil, fmt.Errorf("%s: no route %q (routes: %s)", cfg.File, route, strings.Join(names, ", "))
	}
	up := cfg.Upstreams[rt.Upstream]
	if up == nil {
		return nil, fmt.Errorf("%s: route %q names missing upstream %q", cfg.File, route, rt.Upstream)
	}
	if path == "" {
		path = rt.Match.PathPrefix
	}
	if path == "" {
		path = "/"
	}
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("invalid path %q: it must begin with /", path)
	}
	streaming := rt.Strict == nil
	o := &Options{
		Title: fmt.Sprintf("route %q (upstream %q)", rt.Name, rt.Upstream),
		Path:  path,
		Upstream: upstream.Options{
			Name:                  rt.Upstream,
			ConnectTimeout:        up.Timeouts.Connect.Std(),
			ResponseHeaderTimeout: up.Timeouts.ResponseHeader.Std(),
			IdleTimeout:           up.Timeouts.Idle.Std(),
			HeadLimits:            upstream.Limits{Bytes: int(up.ResponseHeadLimit), Fields: maxHeadFields},
			Resolver:              up.Resolver,
		},
		HeaderTimeout: rt.Retry.PerTryTimeout.Std(),
		ConnectName:   "timeouts.connect",
		HeaderName:    "timeouts.response_header",
		IdleName:      "timeouts.idle",
		BodyCap:       DefaultBodyCap,
		Streaming:     &streaming,
	}
	if o.HeaderTimeout > 0 {
		o.HeaderName = "retry.per_try_timeout"
	}
	if rt.Strict != nil {
		// A strict route buffers at most strict.buffer bytes.
		o.BodyCap = int64(rt.Strict.Buffer)
	}
	if rt.Maintenance {
		o.Notes = append(o.Notes, "the route is in maintenance: candor answers it 503 route_maintenance without contacting the upstream; probing the upstream anyway")
	}
	for i, t := range up.Targets {
		if t.Drain {
			o.Notes = append(o.Notes, fmt.Sprintf("target %d (%s) is drained: skipped", i, t.URL))
			continue
		}
		o.Target = strings.TrimSuffix(t.URL, "/")
		o.Title += " target " + o.Target
		break
	}
	if o.Target != "" {
		u, err := url.Parse(o.Target)
		if err != nil {
			return nil, err
		}
		o.Host = u.Host
	}
	if rt.Match.Host != "" {
		o.Host = rt.Match.Host
	}
	if up.TLS != nil {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: up.TLS.ServerName}
		if up.TLS.CAFile != "" {
			pem, err := os.ReadFile(up.TLS.CAFile)
			if err != nil {
				return nil, fmt.Errorf("tls.ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, errors.New("tls.ca_file: no PEM certificate in " + up.TLS.CAFile)
			}
			tc.RootCAs = pool
		}
		o.Upstream.TLS = tc
	}
	return o, nil
}

// SetTimeout replaces the connect, response-head and body idle timeouts
// with d (the --timeout flag).
func (o *Options) SetTimeout(d time.Duration) {
	o.Upstream.ConnectTimeout = d
	o.Upstream.ResponseHeaderTimeout = d
	o.Upstream.IdleTimeout = d
	o.HeaderTimeout = 0
	o.ConnectName, o.HeaderName, o.IdleName = "--timeout", "--timeout", "--timeout"
}

// Step is one step of a run as printed.
type Step struct {
	// Name is dns, connect, tls, request, response or body.
	Name string
	// Verdict is ok, FAIL or skipped.
	Verdict string
	// Took is the step's duration (zero when skipped).
	Took time.Duration
	// Info is the rest of the line: what was found, or the cause id.
	Info string
}

// Result is the outcome of a [Run].
type Result struct {
	Steps []Step
	// Failure is the failure candor would report, nil on success.
	Failure *failure.Error
	// Status and Reason are the upstream's, when its response head was
	// valid.
	Status int
	Reason string
}

// OK reports whether the target answered with a response candor passes
// through (whatever its status).
func (r *Result) OK() bool { return r.Failure == nil }

// ExitCode is `candor diagnose`'s exit status: 0 on success, 1 on failure.
func (r *Result) ExitCode() int {
	if r.OK() {
		return 0
	}
	return 1
}

// run is the state of one Run.
type run struct {
	o   *Options
	w   io.Writer
	res *Result
}

func (r *run) step(s Step) {
	r.res.Steps = append(r.res.Steps, s)
	took := ""
	if s.Verdict != "skipped" {
		took = fmtDuration(s.Took)
	}
	line := fmt.Sprintf("  %-10s%-8s", s.Name, s.Verdict)
	if took != "" {
		line += fmt.Sprintf("%-6s ", took)
	}
	fmt.Fprintln(r.w, strings.TrimRight(line+s.Info, " "))
}

// more prints an indented continuation line of the last step.
func (r *run) more(label, text string) {
	fmt.Fprintf(r.w, "%20s%-11s%s\n", "", label, text)
}

// fail records and prints a failed step.
func (r *run) fail(name string, took time.Duration, err error) *Result {
	fe, ok := errors.AsType[*failure.Error](err)
	if !ok {
		fe = failure.Wrap(failure.KindUnknown, "", err)
	}
	r.step(Step{Name: name, Verdict: "FAIL", Took: took, Info: fe.Kind.String()})
	r.res.Failure = fe
	return r.res
}

// Run probes the target of o, writing the report to w.
func Run(ctx context.Context, w io.Writer, o *Options) *Result {
	r := &run{o: o, w: w, res: &Result{}}
	fmt.Fprintln(w, "candor diagnose", o.Title)
	for _, n := range o.Notes {
		fmt.Fprintln(w, "  note:", n)
	}
	r.walk(ctx)
	r.summary()
	return r.res
}

func (r *run) walk(ctx context.Context) {
	o := r.o
	if o.Target == "" {
		r.step(Step{Name: "select", Verdict: "FAIL", Info: failure.NoHealthyUpstream.String()})
		r.res.Failure = failure.New(failure.NoHealthyUpstream, "upstream "+strconv.Quote(o.Upstream.Name)+" has no target that is not drained")
		return
	}
	p, err := upstream.NewProbe(o.Upstream, o.Target)
	if err != nil {
		r.fail("select", 0, failure.Wrap(failure.KindUnknown, "target "+o.Target, err))
		return
	}
	defer p.Close()

	// DNS.
	t0 := time.Now()
	ips, err := p.Resolve(ctx)
	took := time.Since(t0)
	if _, literal := p.IPLiteral(); literal {
		r.step(Step{Name: "dns", Verdict: "skipped", Info: "(IP literal)"})
	} else if err != nil {
		r.fail("dns", took, err)
		return
	} else {
		r.step(Step{Name: "dns", Verdict: "ok", Took: took, Info: p.Host() + " -> " + joinAddrs(ips) + " (" + r.resolverName() + ")"})
	}

	// TCP connect.
	t0 = time.Now()
	ap, err := p.Connect(ctx, ips)
	took = time.Since(t0)
	if err != nil {
		r.fail("connect", took, err)
		return
	}
	r.step(Step{Name: "connect", Verdict: "ok", Took: took, Info: ap.String()})

	// TLS.
	if p.TLS() {
		t0 = time.Now()
		st, err := p.Handshake(ctx)
		took = time.Since(t0)
		if err != nil {
			r.fail("tls", took, err)
			if cve, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
				r.certificate(cve.UnverifiedCertificates, false)
			}
			return
		}
		alpn := ""
		if st.NegotiatedProtocol != "" {
			alpn = ", ALPN " + st.NegotiatedProtocol
		}
		r.step(Step{Name: "tls", Verdict: "ok", Took: took, Info: tls.VersionName(st.Version) + alpn + ", certificate verified for " + strconv.Quote(p.ServerName())})
		r.certificate(st.PeerCertificates, true)
	}

	// Request.
	req := &upstream.Request{Method: http.MethodGet, Target: o.Path, Host: o.Host, HeaderTimeout: o.HeaderTimeout}
	t0 = time.Now()
	if err := p.Send(ctx, req); err != nil {
		r.fail("request", time.Since(t0), err)
		return
	}
	r.step(Step{Name: "request", Verdict: "ok", Took: time.Since(t0), Info: "GET " + o.Path + " (Host: " + o.Host + ")"})

	// Response head.
	t0 = time.Now()
	resp, err := p.ReadHead(ctx)
	took = time.Since(t0)
	if err != nil {
		r.fail("response", took, err)
		return
	}
	r.res.Status, r.res.Reason = resp.Status, resp.Reason
	r.step(Step{Name: "response", Verdict: "ok", Took: took, Info: fmt.Sprintf("HTTP/1.%d %d %s, %s, head %d bytes", resp.Minor, resp.Status, resp.Reason, plural(len(resp.Fields), "header field"), resp.Size)})

	// Body framing.
	t0 = time.Now()
	limit := o.BodyCap
	if limit <= 0 {
		limit = DefaultBodyCap
	}
	strict := o.Streaming != nil && !*o.Streaming
	if strict && resp.Mode == upstream.BodyLength && resp.ContentLength > limit {
		// The gateway refuses it before reading it.
		resp.Body.Close()
		r.fail("body", time.Since(t0), failure.New(failure.ResponseTooLarge, "Content-Length "+strconv.FormatInt(resp.ContentLength, 10)+" exceeds strict.buffer "+strconv.FormatInt(limit, 10)))
		return
	}
	n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, limit))
	if err == nil && n == limit {
		// Is there more? One more byte says so; the rest is not read.
		var one [1]byte
		m, rerr := resp.Body.Read(one[:])
		switch {
		case m > 0 && strict:
			resp.Body.Close()
			r.fail("body", time.Since(t0), failure.New(failure.ResponseTooLarge, "body exceeds strict.buffer "+strconv.FormatInt(limit, 10)+" bytes"))
			return
		case m > 0:
			resp.Body.Close()
			r.step(Step{Name: "body", Verdict: "ok", Took: time.Since(t0), Info: framing(resp, n) + "; first " + sizeText(limit) + " read, the rest not checked"})
			return
		case rerr != nil && rerr != io.EOF:
			err = rerr
		}
	}
	took = time.Since(t0)
	resp.Body.Close()
	if err != nil {
		r.fail("body", took, err)
		return
	}
	info := framing(resp, n)
	if tr := resp.Body.Trailer(); len(tr) > 0 {
		info += ", " + plural(len(tr), "trailer field")
	}
	r.step(Step{Name: "body", Verdict: "ok", Took: took, Info: info})
}

func (r *run) resolverName() string {
	if r.o.Upstream.Resolver != "" {
		return "resolver " + r.o.Upstream.Resolver
	}
	return "system resolver"
}

// certificate prints the leaf of certs: subject, issuer, expiry.
func (r *run) certificate(certs []*x509.Certificate, verified bool) {
	if len(certs) == 0 {
		return
	}
	c := certs[0]
	r.more("subject", c.Subject.String())
	r.more("issuer", c.Issuer.String())
	names := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) > 0 {
		r.more("names", strings.Join(names, ", "))
	}
	now := time.Now()
	when := c.NotAfter.UTC().Format(time.RFC3339)
	switch left := c.NotAfter.Sub(now); {
	case left < 0:
		when += " (expired " + roughDuration(-left) + " ago)"
	case now.Before(c.NotBefore):
		when += " (not valid before " + c.NotBefore.UTC().Format(time.RFC3339) + ")"
	case verified && left < 14*24*time.Hour:
		when += " (expires in " + roughDuration(left) + ": renew it soon)"
	default:
		when += " (in " + roughDuration(left) + ")"
	}
	r.more("not after", when)
	if !verified && len(certs) > 1 {
		r.more("chain", strconv.Itoa(len(certs))+" certificates sent")
	}
}

// summary prints the outcome.
func (r *run) summary() {
	fe := r.res.Failure
	if fe == nil {
		fmt.Fprintf(r.w, "status:  %d %s: a valid response, which candor passes through unchanged\n", r.res.Status, r.res.Reason)
		return
	}
	row := fe.Kind.Row()
	fmt.Fprintf(r.w, "cause:   %s (%s)\n", row.ID, r.answer(fe.Kind))
	if d := r.detail(fe); d != "" {
		fmt.Fprintf(r.w, "detail:  %s\n", d)
	}
	fmt.Fprintf(r.w, "what:    %s\n", row.Explanation)
	fmt.Fprintf(r.w, "fix:     %s\n", row.Fix)
}

// answer says what candor answers for k.
func (r *run) answer(k failure.Kind) string {
	status := strconv.Itoa(k.Status())
	if k.Row().Phase != failure.PhaseReadBody {
		return "candor answers " + status
	}
	switch {
	case r.o.Streaming == nil:
		return "candor answers " + status + " on a strict route; on a streaming route the status is already sent and the client sees the response cut off"
	case *r.o.Streaming:
		return "the route streams: the status is already sent and the client sees the response cut off; a strict route would answer " + status
	}
	return "candor answers " + status + ": the route is strict"
}

// detail says what exactly failed.
func (r *run) detail(fe *failure.Error) string {
	o := r.o
	switch fe.Kind {
	case failure.ConnectTimeout:
		return "no connection within " + o.Upstream.ConnectTimeout.String() + " (" + o.ConnectName + ") to " + fe.Target
	case failure.ResponseTimeout:
		wait := o.Upstream.ResponseHeaderTimeout
		if o.HeaderTimeout > 0 {
			wait = o.HeaderTimeout
		}
		return "no complete response head within " + wait.String() + " (" + o.HeaderName + ")"
	case failure.BodyTimeout:
		return "nothing received for " + o.Upstream.IdleTimeout.String() + " (" + o.IdleName + ") while reading the body"
	case failure.ClosedBeforeResponse:
		if errors.Is(fe.Err, io.EOF) {
			return "the connection closed after the request was sent, before any response byte"
		}
	}
	var parts []string
	if fe.Detail != "" {
		parts = append(parts, fe.Detail)
	}
	if fe.Err != nil && !(fe.Detail != "" && errors.Is(fe.Err, io.ErrUnexpectedEOF)) {
		parts = append(parts, fe.Err.Error())
	}
	return strings.Join(parts, ": ")
}

// framing describes how the body was delimited and how much was read.
func framing(resp *upstream.Response, n int64) string {
	switch resp.Mode {
	case upstream.BodyNone:
		return "no body (" + noBodyWhy(resp) + ")"
	case upstream.BodyLength:
		return fmt.Sprintf("Content-Length %d, %d bytes read", resp.ContentLength, n)
	case upstream.BodyChunked:
		return fmt.Sprintf("chunked, %d bytes read, last chunk received", n)
	}
	return fmt.Sprintf("delimited by the connection's close, %d bytes read", n)
}

func noBodyWhy(resp *upstream.Response) string {
	switch {
	case resp.Status == http.StatusNoContent:
		return "204"
	case resp.Status == http.StatusNotModified:
		return "304"
	case resp.Status < 200:
		return "1xx"
	}
	return "no body by its framing"
}

func joinAddrs(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ", ")
}

// fmtDuration prints a step's duration: 0.2ms, 12ms, 1.50s.
func fmtDuration(d time.Duration) string {
	switch {
	case d < 10*time.Millisecond:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + "ms"
	case d < time.Second:
		return strconv.FormatInt(d.Round(time.Millisecond).Milliseconds(), 10) + "ms"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
}

// roughDuration prints a long duration in its largest unit: 23h, 89d.
func roughDuration(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	case d >= time.Hour:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d >= time.Minute:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return d.Round(time.Second).String()
}

func sizeText(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return strconv.FormatInt(n>>20, 10) + " MiB"
	}
	if n >= 1<<10 && n%(1<<10) == 0 {
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}
