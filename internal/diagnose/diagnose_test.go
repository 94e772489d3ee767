package diagnose

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"candor/internal/config"
	"candor/internal/failure"
	"candor/internal/fault"
)

// quick is the --timeout of runs that are expected to time out.
const quick = 300 * time.Millisecond

// probeURL runs diagnose on raw with the default timeouts, or quick ones
// when timeout is set, and returns the result and the output.
func probeURL(t *testing.T, raw string, timeout time.Duration) (*Result, string) {
	t.Helper()
	o, err := FromURL(raw)
	if err != nil {
		t.Fatalf("FromURL(%q): %v", raw, err)
	}
	if timeout > 0 {
		o.SetTimeout(timeout)
	}
	return probe(t, o)
}

func probe(t *testing.T, o *Options) (*Result, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	res := Run(ctx, &out, o)
	return res, out.String()
}

// probeRoute writes a configuration with one route "api" to upstream "api"
// (its YAML given) and runs diagnose on the route.
func probeRoute(t *testing.T, upstreamYAML, path string, timeout time.Duration) (*Result, string) {
	t.Helper()
	cfg := loadConfig(t, upstreamYAML)
	o, err := FromRoute(cfg, "api", path)
	if err != nil {
		t.Fatal(err)
	}
	if timeout > 0 {
		o.SetTimeout(timeout)
	}
	return probe(t, o)
}

func loadConfig(t *testing.T, upstreamYAML string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "candor.yaml")
	text := "routes:\n  - {name: api, upstream: api}\nupstreams:\n  api:\n" + indent(upstreamYAML, "    ")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatalf("config:\n%s\n%v", text, err)
	}
	return cfg
}

func indent(s, by string) string {
	var b strings.Builder
	for l := range strings.SplitSeq(strings.TrimSpace(s), "\n") {
		b.WriteString(by + l + "\n")
	}
	return b.String()
}

// wantCause checks that res failed with kind and that the output carries
// the cause block built from the cause table.
func wantCause(t *testing.T, res *Result, out string, k failure.Kind) {
	t.Helper()
	if res.OK() || res.Failure.Kind != k {
		got := "success"
		if !res.OK() {
			got = res.Failure.Kind.String()
		}
		t.Fatalf("got %s, want %s; output:\n%s", got, k, out)
	}
	if res.ExitCode() != 1 {
		t.Fatalf("exit code %d", res.ExitCode())
	}
	row := k.Row()
	for _, want := range []string{
		"FAIL",
		"cause:   " + row.ID + " (",
		"what:    " + row.Explanation + "\n",
		"fix:     " + row.Fix + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The failed step is the last step printed, and names the cause.
	last := res.Steps[len(res.Steps)-1]
	if last.Verdict != "FAIL" || last.Info != row.ID {
		t.Errorf("last step %+v", last)
	}
}

func wantOK(t *testing.T, res *Result, out string) {
	t.Helper()
	if !res.OK() {
		t.Fatalf("failed with %v; output:\n%s", res.Failure, out)
	}
	if res.ExitCode() != 0 || !strings.Contains(out, "\nstatus:  ") || strings.Contains(out, "FAIL") {
		t.Fatalf("output:\n%s", out)
	}
}

// TestScripts runs diagnose against every script of the fault upstream's
// catalog: each malformed response gives the script's cause, each valid
// one a success.
func TestScripts(t *testing.T) {
	scripts := fault.Scripts()
	if len(scripts) < 50 {
		t.Fatalf("only %d scripts", len(scripts))
	}
	causes := map[string]bool{}
	for _, s := range scripts {
		t.Run(s.Name, func(t *testing.T) {
			t.Parallel()
			srv, err := fault.NewScriptServer(s)
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			res, out := probeURL(t, srv.URL()+"/x", 5*time.Second)
			if s.Cause == fault.CausePass {
				wantOK(t, res, out)
				return
			}
			k, ok := failure.Lookup(s.Cause)
			if !ok {
				t.Fatalf("script cause %q is not in the cause table", s.Cause)
			}
			wantCause(t, res, out, k)
			if !strings.Contains(out, "\ndetail:  ") {
				t.Errorf("no detail:\n%s", out)
			}
		})
		causes[s.Cause] = true
	}
	// The catalog covers every cause of the head and body parsers.
	for _, k := range []failure.Kind{
		failure.TruncatedHead, failure.MalformedStatusLine, failure.MalformedHeader,
		failure.HeadTooLarge, failure.InvalidFraming, failure.UnexpectedUpgrade,
		failure.ProtocolMismatch, failure.TruncatedBody, failure.MalformedChunk,
	} {
		if !causes[k.String()] {
			t.Errorf("no script for %s", k)
		}
	}
}

// TestOutput checks the exact shape of a failure report, the one the
// README shows.
func TestOutput(t *testing.T) {
	srv, err := fault.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	raw := srv.URL() + "/script/upstream_malformed_header/space_before_colon"
	res, out := probeURL(t, raw, 0)
	wantCause(t, res, out, failure.MalformedHeader)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	want := []string{
		`^candor diagnose ` + raw + `$`,
		`^  dns       skipped \(IP literal\)$`,
		`^  connect   ok      [0-9.]+m?s +127\.0\.0\.1:\d+$`,
		`^  request   ok      [0-9.]+m?s +GET /script/upstream_malformed_header/space_before_colon \(Host: 127\.0\.0\.1:\d+\)$`,
		`^  response  FAIL    [0-9.]+m?s +upstream_malformed_header$`,
		`^cause:   upstream_malformed_header \(candor answers 502\)$`,
		`^detail:  header line \d: whitespace before the colon \(RFC 9112 §5\.1\): ".*"$`,
		`^what:    `,
		`^fix:     `,
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, re := range want {
		if !regexpMatch(re, lines[i]) {
			t.Errorf("line %d %q does not match %s", i, lines[i], re)
		}
	}
}

// TestServer covers the fault upstream's other behaviours: success, close,
// reset and stalls.
func TestServer(t *testing.T) {
	srv, err := fault.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	for _, tc := range []struct {
		path    string
		timeout time.Duration
		want    failure.Kind // KindUnknown: success
		detail  string
	}{
		{path: "/ok"},
		{path: "/status/502"}, // the upstream's own 502 is passed through
		{path: "/status/204"},
		{path: "/chunked?n=5"},
		{path: "/big?bytes=3000000"}, // more than the body cap
		{path: "/close", want: failure.ClosedBeforeResponse, detail: "before any response byte"},
		{path: "/reset", want: failure.ResetBeforeResponse},
		{path: "/stall-head", timeout: quick, want: failure.ResponseTimeout, detail: "no complete response head within 300ms (--timeout)"},
		{path: "/stall-body", timeout: quick, want: failure.BodyTimeout, detail: "nothing received for 300ms (--timeout)"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			res, out := probeURL(t, srv.URL()+tc.path, tc.timeout)
			if tc.want == failure.KindUnknown {
				wantOK(t, res, out)
				return
			}
			wantCause(t, res, out, tc.want)
			if !strings.Contains(out, tc.detail) {
				t.Errorf("output lacks %q:\n%s", tc.detail, out)
			}
		})
	}
}

func TestSuccessOutput(t *testing.T) {
	srv, err := fault.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	res, out := probeURL(t, srv.URL()+"/ok", 0)
	wantOK(t, res, out)
	if res.Status != 200 {
		t.Fatalf("status %d", res.Status)
	}
	for _, want := range []string{
		"  response  ok ", "HTTP/1.1 200 OK, ",
		"  body      ok ", "Content-Length 24, 24 bytes read",
		"status:  200 OK: a valid response, which candor passes through unchanged\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	res, out = probeURL(t, srv.URL()+"/big?bytes=3000000", 0)
	wantOK(t, res, out)
	if !strings.Contains(out, "first 1 MiB read, the rest not checked") {
		t.Errorf("capped body:\n%s", out)
	}
}

func TestConnect(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		addr, err := fault.RefusedAddr()
		if err != nil {
			t.Fatal(err)
		}
		res, out := probeURL(t, "http://"+addr+"/", 0)
		wantCause(t, res, out, failure.ConnectRefused)
		if !strings.Contains(out, "connection refused") {
			t.Errorf("no detail:\n%s", out)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		b, err := fault.NewBacklogFull()
		if err != nil {
			t.Skip("no backlog-full listener here:", err)
		}
		defer b.Close()
		start := time.Now()
		res, out := probeURL(t, "http://"+b.Addr()+"/", quick)
		wantCause(t, res, out, failure.ConnectTimeout)
		if !strings.Contains(out, "no connection within 300ms (--timeout)") || !strings.Contains(out, "(candor answers 504)") {
			t.Errorf("output:\n%s", out)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("took %v with a 300ms timeout", d)
		}
	})
}

func TestDNS(t *testing.T) {
	dns, err := fault.NewDNS()
	if err != nil {
		t.Fatal(err)
	}
	defer dns.Close()
	srv, err := fault.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	_, port, _ := strings.Cut(srv.Addr(), ":")
	dns.Add("api.candor.test", netip.MustParseAddr("127.0.0.1"))

	t.Run("nxdomain", func(t *testing.T) {
		res, out := probeRoute(t, `targets: [{url: "http://nowhere.candor.test:`+port+`"}]
resolver: "`+dns.Addr()+`"`, "/ok", 0)
		wantCause(t, res, out, failure.DNSFailed)
		if !strings.Contains(out, "no such host") {
			t.Errorf("no detail:\n%s", out)
		}
	})
	t.Run("resolved", func(t *testing.T) {
		res, out := probeRoute(t, `targets: [{url: "http://api.candor.test:`+port+`"}]
resolver: "`+dns.Addr()+`"`, "/ok", 0)
		wantOK(t, res, out)
		if !strings.Contains(out, "  dns       ok ") || !strings.Contains(out, "api.candor.test -> 127.0.0.1 (resolver "+dns.Addr()+")") {
			t.Errorf("output:\n%s", out)
		}
	})
}

func TestTLS(t *testing.T) {
	ca, err := fault.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	other, err := fault.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	good, err := fault.NewTLSServer(ca)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	misnamed, err := fault.NewTLSServer(ca, "elsewhere.candor.test")
	if err != nil {
		t.Fatal(err)
	}
	defer misnamed.Close()
	untrusted, err := fault.NewTLSServer(other)
	if err != nil {
		t.Fatal(err)
	}
	defer untrusted.Close()
	plain, err := fault.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	upstreamYAML := func(url string) string {
		return `targets: [{url: "` + url + `"}]
tls: {ca_file: "` + caFile + `"}`
	}

	t.Run("verified", func(t *testing.T) {
		res, out := probeRoute(t, upstreamYAML(good.URL()), "/ok", 0)
		wantOK(t, res, out)
		for _, want := range []string{
			"  tls       ok ", `certificate verified for "127.0.0.1"`,
			"subject    CN=127.0.0.1", "issuer     CN=candor fault CA,O=candor", "not after  ",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("name_mismatch", func(t *testing.T) {
		res, out := probeRoute(t, upstreamYAML(misnamed.URL()), "/ok", 0)
		wantCause(t, res, out, failure.TLSNameMismatch)
		// The certificate presented is shown, though it failed.
		if !strings.Contains(out, "names      elsewhere.candor.test") {
			t.Errorf("output:\n%s", out)
		}
	})
	t.Run("untrusted", func(t *testing.T) {
		res, out := probeRoute(t, upstreamYAML(untrusted.URL()), "/ok", 0)
		wantCause(t, res, out, failure.TLSUntrusted)
		if !strings.Contains(out, "unknown authority") {
			t.Errorf("output:\n%s", out)
		}
	})
	t.Run("untrusted_system_roots", func(t *testing.T) {
		res, out := probeURL(t, good.URL()+"/ok", 0)
		wantCause(t, res, out, failure.TLSUntrusted)
	})
	t.Run("plaintext", func(t *testing.T) {
		https := "https://" + plain.Addr()
		res, out := probeRoute(t, upstreamYAML(https), "/ok", 0)
		wantCause(t, res, out, failure.TLSNotTLS)
	})
}

func TestRoute(t *testing.T) {
	srv, err := fault.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	t.Run("settings", func(t *testing.T) {
		cfg := loadConfig(t, `targets: [{url: "http://127.0.0.1:1", drain: true}, {url: "`+srv.URL()+`"}]
timeouts: {connect: 1500ms, response_header: 7s, idle: 9s}
response_head_limit: 2KiB`)
		cfg.Routes[0].Match.Host = "api.example"
		o, err := FromRoute(cfg, "api", "")
		if err != nil {
			t.Fatal(err)
		}
		if o.Target != srv.URL() || o.Path != "/" || o.Host != "api.example" ||
			o.Upstream.ConnectTimeout != 1500*time.Millisecond || o.Upstream.ResponseHeaderTimeout != 7*time.Second ||
			o.Upstream.IdleTimeout != 9*time.Second || o.Upstream.HeadLimits.Bytes != 2048 || *o.Streaming != true {
			t.Fatalf("%+v", o)
		}
		if _, err := FromRoute(cfg, "nope", ""); err == nil || !strings.Contains(err.Error(), "routes: api") {
			t.Fatalf("unknown route: %v", err)
		}
	})
	t.Run("head_limit", func(t *testing.T) {
		// A head over the route's limit but under the default one.
		res, out := probeRoute(t, `targets: [{url: "`+srv.URL()+`"}]
response_head_limit: 1KiB`, "/big?bytes=10", 0)
		wantOK(t, res, out)
		srvBig, err := fault.NewScriptServer(fault.Script{Name: "x/y", Cause: "x", Bytes: []byte("HTTP/1.1 200 OK\r\nX-Pad: " + strings.Repeat("p", 1500) + "\r\nContent-Length: 0\r\n\r\n")})
		if err != nil {
			t.Fatal(err)
		}
		defer srvBig.Close()
		res, out = probeRoute(t, `targets: [{url: "`+srvBig.URL()+`"}]
response_head_limit: 1KiB`, "/", 0)
		wantCause(t, res, out, failure.HeadTooLarge)
		res, out = probeURL(t, srvBig.URL(), 0)
		wantOK(t, res, out)
	})
	t.Run("no_target", func(t *testing.T) {
		res, out := probeRoute(t, `targets: []`, "/", 0)
		wantCause(t, res, out, failure.NoHealthyUpstream)
		if !strings.Contains(out, "(candor answers 503)") {
			t.Errorf("output:\n%s", out)
		}
	})
	t.Run("strict_body", func(t *testing.T) {
		cfg := loadConfig(t, `targets: [{url: "`+srv.URL()+`"}]`)
		cfg.Routes[0].Strict = &config.Strict{Buffer: 100, Validate: config.ValidateNone}
		o, err := FromRoute(cfg, "api", "/big?bytes=1000")
		if err != nil {
			t.Fatal(err)
		}
		res, out := probe(t, o)
		wantCause(t, res, out, failure.ResponseTooLarge)
		o, _ = FromRoute(cfg, "api", "/script/upstream_truncated_body/content_length_short")
		res, out = probe(t, o)
		wantCause(t, res, out, failure.TruncatedBody)
		if !strings.Contains(out, "(candor answers 502: the route is strict)") {
			t.Errorf("output:\n%s", out)
		}
	})
	t.Run("streaming_body", func(t *testing.T) {
		res, out := probeRoute(t, `targets: [{url: "`+srv.URL()+`"}]`, "/script/upstream_truncated_body/content_length_short", 0)
		wantCause(t, res, out, failure.TruncatedBody)
		if !strings.Contains(out, "the client sees the response cut off") {
			t.Errorf("output:\n%s", out)
		}
	})
}

func TestFromURL(t *testing.T) {
	for _, raw := range []string{"", "ftp://x/", "http://", "http://u:p@host/", "http://host/#frag", "http://host:0/", "http://host:99999/", "127.0.0.1:80"} {
		if _, err := FromURL(raw); err == nil {
			t.Errorf("FromURL(%q) accepted", raw)
		}
	}
	o, err := FromURL("https://api.example:8443/v1/x?q=1")
	if err != nil {
		t.Fatal(err)
	}
	if o.Target != "https://api.example:8443" || o.Path != "/v1/x?q=1" || o.Host != "api.example:8443" ||
		o.Upstream.ConnectTimeout != 2*time.Second || o.Upstream.ResponseHeaderTimeout != 30*time.Second {
		t.Fatalf("%+v", o)
	}
}

func TestExplain(t *testing.T) {
	for _, k := range failure.Kinds() {
		var out bytes.Buffer
		if !Explain(&out, k.String()) {
			t.Fatalf("%s unknown", k)
		}
		row := k.Row()
		for _, want := range []string{"cause:   " + row.ID + "\n", "phase:   " + row.Phase.String() + "\n", "what:    " + row.Explanation + "\n", "fix:     " + row.Fix + "\n", "retry:   "} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%s: page lacks %q:\n%s", k, want, out.String())
			}
		}
	}
	var out bytes.Buffer
	if Explain(&out, "no_such_cause") || out.Len() != 0 {
		t.Fatal("unknown cause explained")
	}
	if len(KnownIDs()) != len(failure.Kinds()) {
		t.Fatal("KnownIDs")
	}
}

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }
