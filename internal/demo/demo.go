// Package demo runs candor in front of a built-in misbehaving upstream (the
// same fault upstream the tests use), so that a newcomer can see every kind
// of outcome with curl and no configuration.
package demo

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"candor/internal/config"
	"candor/internal/fault"
	"candor/internal/reload"
)

// Demo is a running demo: the fault upstream, a DNS server that knows no
// names, and the gateway.
type Demo struct {
	State *reload.State
	up    *fault.Server
	dns   *fault.DNS
}

// configTemplate is the demo's configuration. It goes through the same
// decoder and validation as a user's file.
const configTemplate = `# candor demo configuration (generated)
listen: {{listen}}
routes:
  - name: strict
    match: {host: strict.demo}
    upstream: demo
    strict: {buffer: 64KiB, validate: json}
  - name: refused
    match: {host: refused.demo}
    upstream: refused
  - name: dns
    match: {host: dns.demo}
    upstream: nxdomain
  - name: tls
    match: {host: tls.demo}
    upstream: plaintext-as-https
  - name: parked
    match: {host: parked.demo}
    upstream: parked
  - name: default
    upstream: demo
upstreams:
  demo:
    targets: [{url: "{{upstream}}"}]
    timeouts: {connect: 1s, response_header: 2s, idle: 2s}
  refused:
    targets: [{url: "http://{{refused}}"}]
  nxdomain:
    targets: [{url: "http://missing.demo.test:80"}]
    resolver: {{dns}}
  plaintext-as-https:
    targets: [{url: "https://{{upstream_addr}}"}]
  parked:
    targets: []
`

// Config returns the demo's configuration text for the given addresses.
func Config(listen, upstreamURL, upstreamAddr, refused, dns string) string {
	return strings.NewReplacer(
		"{{listen}}", listen,
		"{{upstream}}", upstreamURL,
		"{{upstream_addr}}", upstreamAddr,
		"{{refused}}", refused,
		"{{dns}}", dns,
	).Replace(configTemplate)
}

// Start starts the fault upstream, the DNS server and the gateway on
// listen.
func Start(listen string, log *slog.Logger) (*Demo, error) {
	d := &Demo{}
	var err error
	if d.up, err = fault.NewServer(); err != nil {
		return nil, err
	}
	if d.dns, err = fault.NewDNS(); err != nil {
		d.Close()
		return nil, err
	}
	refused, err := fault.RefusedAddr()
	if err != nil {
		d.Close()
		return nil, err
	}
	text := Config(listen, d.up.URL(), d.up.Addr(), refused, d.dns.Addr())
	cfg, err := config.Parse("demo.yaml", []byte(text))
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("demo configuration: %w", err)
	}
	if d.State, err = reload.Start(cfg, log); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Close stops the demo upstreams. The gateway is stopped by its State.
func (d *Demo) Close() {
	if d.up != nil {
		d.up.Close()
	}
	if d.dns != nil {
		d.dns.Close()
	}
}

// Example is one curl line of the guide.
type Example struct {
	// Host is the Host header to send, or "" for the default route.
	Host string
	// Path is the request path.
	Path string
	// Accept is the Accept header, or "".
	Accept string
	// Status is what candor answers; 0 means "200, then cut off".
	Status int
	// Cause is the cause id, or "" for an upstream's own response.
	Cause string
	// Note explains the line.
	Note string
}

// Examples returns the guide's lines: a success, a passed-through upstream
// error, one 502 per kind of broken upstream response, a 504, a 503, and
// the failure modes that need their own upstream.
func Examples() []Example {
	ex := []Example{
		{Path: "/ok", Status: 200, Note: "a healthy upstream response"},
		{Path: "/status/500", Status: 500, Note: "the upstream's own, well-formed 500: passed through unchanged"},
		{Path: "/status/503", Status: 503, Note: "the upstream's own 503: passed through, not relabelled"},
	}
	seen := map[string]bool{}
	for _, s := range fault.Scripts() {
		if s.Cause == "pass" || seen[s.Cause] || s.Cause == "upstream_truncated_body" || s.Cause == "upstream_malformed_chunk" {
			continue
		}
		seen[s.Cause] = true
		ex = append(ex, Example{Path: "/script/" + s.Name, Status: 502, Cause: s.Cause, Note: "a broken upstream response: " + s.Name})
	}
	ex = append(ex,
		Example{Host: "refused.demo", Path: "/", Status: 502, Cause: "upstream_connect_refused", Note: "nothing listens on the target's port"},
		Example{Host: "dns.demo", Path: "/", Status: 502, Cause: "upstream_dns_failed", Note: "the target's name does not resolve"},
		Example{Host: "tls.demo", Path: "/", Status: 502, Cause: "upstream_tls_not_tls", Note: "an https target that speaks plaintext"},
		Example{Path: "/stall-head?ms=5000", Status: 504, Cause: "upstream_response_timeout", Note: "no response head within 2s (response_header)"},
		Example{Host: "parked.demo", Path: "/", Status: 503, Cause: "no_healthy_upstream", Note: "an upstream with no usable target (note Retry-After)"},
		Example{Host: "strict.demo", Path: "/script/pass/invalid_json", Status: 502, Cause: "upstream_contract_violation", Note: "a strict JSON route; the upstream sent malformed JSON"},
		Example{Host: "strict.demo", Path: "/ok", Status: 200, Note: "the same strict route with valid JSON"},
		Example{Path: "/stall-body?ms=5000", Status: 0, Cause: "upstream_body_timeout", Note: "status sent, then the body stalls: the response is cut off, never completed"},
		Example{Path: "/script/upstream_malformed_status_line/garbage", Accept: "text/html", Status: 502, Cause: "upstream_malformed_status_line", Note: "the same error as a browser sees it"},
	)
	return ex
}

// PrintGuide prints the curl lines for the running demo.
func (d *Demo) PrintGuide(w io.Writer) {
	base := "http://" + d.State.GatewayAddr()
	fmt.Fprintf(w, "candor demo: gateway on %s in front of a misbehaving upstream.\n", base)
	fmt.Fprintf(w, "Try these (the log of each gateway error goes to standard error); Ctrl-C stops.\n\n")
	for _, e := range Examples() {
		status := fmt.Sprint(e.Status)
		if e.Status == 0 {
			status = "200, cut off"
		}
		what := status
		if e.Cause != "" {
			what += " " + e.Cause
		}
		fmt.Fprintf(w, "# %s: %s\n%s\n\n", what, e.Note, e.Curl(base))
	}
}

// Curl returns the curl command line for e against base.
func (e Example) Curl(base string) string {
	var b strings.Builder
	b.WriteString("curl -si")
	if e.Host != "" {
		b.WriteString(" -H 'Host: " + e.Host + "'")
	}
	if e.Accept != "" {
		b.WriteString(" -H 'Accept: " + e.Accept + "'")
	}
	b.WriteString(" '" + base + e.Path + "'")
	return b.String()
}
