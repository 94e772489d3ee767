package proxy_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"candor/internal/fault"
	"candor/internal/proxy"
	"candor/internal/router"
	"candor/internal/upstream"
)

// TestDNS: a name that does not resolve is a 502 upstream_dns_failed; a
// name the configured resolver knows works. The test resolver is a DNS
// server on loopback: the system resolver is never asked.
func TestDNS(t *testing.T) {
	dns, err := fault.NewDNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dns.Close() })
	up := faultServer(t)
	_, port := hostPort(t, up.Addr())
	dns.Add("known.candor.test", netip.MustParseAddr("127.0.0.1"))

	g := startGateway(t, `listen: 127.0.0.1:0
routes:
  - {name: missing, match: {path_prefix: /missing/}, upstream: missing}
  - {name: known, upstream: known}
upstreams:
  missing:
    targets: [{url: "http://nxdomain.candor.test:`+port+`"}]
    resolver: `+dns.Addr()+`
  known:
    targets: [{url: "http://known.candor.test:`+port+`"}]
    resolver: `+dns.Addr()+`
`)
	res := get(t, g.base+"/missing/x", nil)
	wantProblem(t, res, 502, "upstream_dns_failed", "nxdomain", "candor.test")
	rec := g.log.record(t, res.header.Get("X-Request-Id"))
	if rec["failure.phase"] != "dns" || rec["target"] != "nxdomain.candor.test:"+port {
		t.Fatalf("log record %v", rec)
	}
	if res := get(t, g.base+"/ok", nil); res.status != 200 {
		t.Fatalf("resolvable name: %d %s", res.status, res.body)
	}
}

// TestConnectTimeout: a DNS server that never answers and a TCP listener
// whose accept queue is full both exhaust timeouts.connect: 504, never 502.
func TestConnectTimeout(t *testing.T) {
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })

	yaml := `listen: 127.0.0.1:0
routes:
  - {name: dns, match: {path_prefix: /dns/}, upstream: dns}
  - {name: tcp, upstream: tcp}
upstreams:
  dns:
    targets: [{url: "http://slow.candor.test:80"}]
    resolver: ` + silent.LocalAddr().String() + `
    timeouts: {connect: 300ms}
  tcp:
    targets: [{url: "http://TCP"}]
    timeouts: {connect: 300ms}
`
	backlog, err := fault.NewBacklogFull()
	if errors.Is(err, errors.ErrUnsupported) {
		yaml = strings.Replace(yaml, "http://TCP", "http://"+silent.LocalAddr().String(), 1)
	} else if err != nil {
		t.Fatal(err)
	} else {
		t.Cleanup(func() { backlog.Close() })
		yaml = strings.Replace(yaml, "http://TCP", "http://"+backlog.Addr(), 1)
	}
	g := startGateway(t, yaml)

	res := get(t, g.base+"/dns/x", nil)
	wantProblem(t, res, 504, "upstream_connect_timeout")
	if rec := g.log.record(t, res.header.Get("X-Request-Id")); rec["failure.phase"] != "dns" {
		t.Fatalf("log record %v", rec)
	}
	if backlog == nil {
		t.Log("accept-queue blackhole unsupported here; TCP connect timeout not exercised")
		return
	}
	res = get(t, g.base+"/x", nil)
	wantProblem(t, res, 504, "upstream_connect_timeout")
	if rec := g.log.record(t, res.header.Get("X-Request-Id")); rec["failure.phase"] != "connect" {
		t.Fatalf("log record %v", rec)
	}
}

// TestTLS covers the TLS failures of the status map, and a working https
// upstream.
func TestTLS(t *testing.T) {
	ca, err := fault.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	other, err := fault.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	otherFile := filepath.Join(dir, "other.pem")
	if err := os.WriteFile(caFile, ca.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(otherFile, other.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsUp, err := fault.NewTLSServer(ca, "api.candor.test", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tlsUp.Close() })
	plain := faultServer(t)

	g := startGateway(t, `listen: 127.0.0.1:0
routes:
  - {name: good, match: {host: good.test}, upstream: good}
  - {name: untrusted, match: {host: untrusted.test}, upstream: untrusted}
  - {name: name, match: {host: name.test}, upstream: name}
  - {name: plaintext, match: {host: plaintext.test}, upstream: plaintext}
  - {name: tlsonhttp, match: {host: tlsonhttp.test}, upstream: tlsonhttp}
upstreams:
  good:
    targets: [{url: "https://`+tlsUp.Addr()+`"}]
    tls: {ca_file: `+caFile+`, server_name: api.candor.test}
  untrusted:
    targets: [{url: "https://`+tlsUp.Addr()+`"}]
    tls: {ca_file: `+otherFile+`, server_name: api.candor.test}
  name:
    targets: [{url: "https://`+tlsUp.Addr()+`"}]
    tls: {ca_file: `+caFile+`, server_name: wrong.candor.test}
  plaintext:
    targets: [{url: "https://`+plain.Addr()+`"}]
    tls: {ca_file: `+caFile+`}
  tlsonhttp:
    targets: [{url: "http://`+tlsUp.Addr()+`"}]
`)
	if res := get(t, g.base+"/status/201", map[string]string{"Host": "good.test"}); res.status != 201 {
		t.Fatalf("https upstream: %d %s", res.status, res.body)
	}
	cases := []struct {
		name, host, cause string
	}{
		{"untrusted CA", "untrusted.test", "upstream_tls_untrusted_certificate"},
		{"name mismatch", "name.test", "upstream_tls_name_mismatch"},
		{"plaintext upstream on https target", "plaintext.test", "upstream_tls_not_tls"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := get(t, g.base+"/ok", map[string]string{"Host": c.host})
			wantProblem(t, res, 502, c.cause, "candor.test")
			if rec := g.log.record(t, res.header.Get("X-Request-Id")); rec["failure.phase"] != "tls" || rec["bytes_sent"] != float64(0) {
				t.Fatalf("log record %v", rec)
			}
		})
	}
	t.Run("TLS upstream on http target", func(t *testing.T) {
		// Go's TLS server closes on a plaintext request; other servers
		// send an alert (covered by the protocol_mismatch scripts).
		res := get(t, g.base+"/ok", map[string]string{"Host": "tlsonhttp.test"})
		if res.status != 502 {
			t.Fatalf("status %d", res.status)
		}
		noLeak(t, res)
	})
}

// TestClientCanceled: a client that gives up is recorded as 499 and the
// upstream attempt is abandoned at once.
func TestClientCanceled(t *testing.T) {
	up := faultServer(t)
	g := startGateway(t, oneUpstream(up.URL(), ""))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", g.base+"/stall-head?ms=5000", nil)
	req.Header.Set("X-Request-Id", "gone-1")
	if _, err := client().Do(req); err == nil {
		t.Fatal("request completed; want the client to give up")
	}
	rec := g.log.record(t, "gone-1")
	if rec["status"] != float64(499) || rec["failure.kind"] != "client_canceled" {
		t.Fatalf("log record %v", rec)
	}
	if d, _ := rec["duration_ms"].(float64); d > 900 {
		t.Fatalf("attempt not abandoned when the client left: %vms", d)
	}
}

// panicPicker fails inside candor, before any upstream is contacted.
type panicPicker struct{}

func (panicPicker) Pick(string) *upstream.Target { panic("broken picker state") }

// TestPanicIs500: candor's own failure before contacting an upstream is a
// 500 gateway_internal_error; the panic text stays in the log.
func TestPanicIs500(t *testing.T) {
	tr, err := upstream.New(upstream.Options{Name: "u"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	lb := &logBuffer{}
	h := proxy.New(&proxy.Table{
		Router: router.New([]router.Rule{{}}),
		Routes: []*proxy.Route{{Name: "r", Upstream: tr, Picker: panicPicker{}}},
	}, proxy.Options{Log: newTestLogger(lb)})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	res := get(t, srv.URL+"/", map[string]string{"X-Request-Id": "boom-1"})
	wantProblem(t, res, 500, "gateway_internal_error", "broken picker", "goroutine")
	rec := lb.record(t, "boom-1")
	if rec["level"] != "ERROR" || !strings.Contains(rec["failure.detail"].(string), "broken picker state") {
		t.Fatalf("log record %v", rec)
	}
}
