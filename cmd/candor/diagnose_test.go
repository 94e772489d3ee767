package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"candor/internal/failure"
	"candor/internal/fault"
)

// TestDiagnose runs `candor diagnose` against the fault upstream: a valid
// response exits 0, a broken one exits 1 with its cause, explanation and
// fix from the cause table.
func TestDiagnose(t *testing.T) {
	up, err := fault.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()

	out, errOut, code := candor(t, "diagnose", up.URL()+"/ok")
	if code != 0 || !strings.Contains(out, "  response  ok ") || !strings.Contains(out, "status:  200 OK") || errOut != "" {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}

	for _, tc := range []struct {
		args []string
		want failure.Kind
	}{
		{[]string{up.URL() + "/script/upstream_malformed_header/space_before_colon"}, failure.MalformedHeader},
		{[]string{up.URL() + "/script/upstream_invalid_framing/cl_and_chunked"}, failure.InvalidFraming},
		{[]string{up.URL() + "/script/upstream_truncated_body/chunked_no_last_chunk"}, failure.TruncatedBody},
		// Flags may follow the URL.
		{[]string{up.URL() + "/stall-head", "--timeout", "300ms"}, failure.ResponseTimeout},
	} {
		out, _, code := candor(t, append([]string{"diagnose"}, tc.args...)...)
		row := tc.want.Row()
		if code != 1 || !strings.Contains(out, "cause:   "+row.ID+" (") ||
			!strings.Contains(out, "what:    "+row.Explanation+"\n") || !strings.Contains(out, "fix:     "+row.Fix+"\n") {
			t.Errorf("diagnose %v: exit %d, want 1 and %s:\n%s", tc.args, code, tc.want, out)
		}
	}

	refused, err := fault.RefusedAddr()
	if err != nil {
		t.Fatal(err)
	}
	out, _, code = candor(t, "diagnose", "http://"+refused+"/health")
	if code != 1 || !strings.Contains(out, "  connect   FAIL ") || !strings.Contains(out, "cause:   upstream_connect_refused (candor answers 502)") {
		t.Fatalf("refused: exit %d\n%s", code, out)
	}
}

// TestDiagnoseRoute probes a route's upstream with its resolver: a name
// the resolver does not know is upstream_dns_failed.
func TestDiagnoseRoute(t *testing.T) {
	dns, err := fault.NewDNS()
	if err != nil {
		t.Fatal(err)
	}
	defer dns.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "candor.yaml")
	os.WriteFile(cfg, []byte(`routes:
  - {name: api, upstream: api, match: {path_prefix: /v1/}}
upstreams:
  api:
    targets: [{url: "http://missing.candor.test:9000"}]
    resolver: "`+dns.Addr()+`"
`), 0o600)
	out, errOut, code := candor(t, "diagnose", "--route", "api", "-c", cfg)
	if code != 1 || !strings.Contains(out, `candor diagnose route "api" (upstream "api") target http://missing.candor.test:9000`) ||
		!strings.Contains(out, "  dns       FAIL ") || !strings.Contains(out, "cause:   upstream_dns_failed (candor answers 502)") ||
		!strings.Contains(out, "no such host") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if dns.Queries() == 0 {
		t.Fatal("the route's resolver was not asked")
	}

	// Usage errors exit 2.
	for _, args := range [][]string{
		{"diagnose"},
		{"diagnose", "ftp://127.0.0.1/"},
		{"diagnose", "--route", "api"},
		{"diagnose", "-c", cfg, "http://127.0.0.1/"},
		{"diagnose", "--route", "nope", "-c", cfg},
		{"diagnose", "--route", "api", "-c", filepath.Join(dir, "missing.yaml")},
		{"diagnose", "--route", "api", "-c", cfg, "no-slash"},
		{"diagnose", "--bogus", "http://127.0.0.1/"},
		{"diagnose", "http://127.0.0.1/", "http://127.0.0.1/"},
	} {
		if _, errOut, code := candor(t, args...); code != 2 || errOut == "" {
			t.Errorf("%v: exit %d, want 2; stderr %q", args, code, errOut)
		}
	}
}

func TestExplain(t *testing.T) {
	out, errOut, code := candor(t, "explain", "upstream_connect_refused")
	row := failure.ConnectRefused.Row()
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"cause:   upstream_connect_refused\n",
		"status:  502 Bad Gateway\n",
		"phase:   connect\n",
		"retry:   always: ",
		`client:  title "Bad Gateway", detail "` + row.Detail + `"`,
		"what:    " + row.Explanation + "\n",
		"fix:     " + row.Fix + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("page lacks %q:\n%s", want, out)
		}
	}

	out, errOut, code = candor(t, "explain", "upstream_on_fire")
	if code != 2 || out != "" || !strings.Contains(errOut, `unknown cause "upstream_on_fire"`) {
		t.Fatalf("unknown cause: exit %d\n%s%s", code, out, errOut)
	}
	for _, k := range failure.Kinds() {
		if !strings.Contains(errOut, "\n  "+k.String()+"\n") {
			t.Errorf("known causes lack %s:\n%s", k, errOut)
		}
	}
	if _, _, code := candor(t, "explain"); code != 2 {
		t.Fatalf("no cause: exit %d", code)
	}
}
