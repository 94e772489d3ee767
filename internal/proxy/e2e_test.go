package proxy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"candor/internal/failure"
	"candor/internal/fault"
)

// bodyPhase reports causes that arise after the status line was read.
func bodyPhase(cause string) bool {
	k, ok := failure.Lookup(cause)
	return ok && k.Row().Phase == failure.PhaseReadBody
}

// reference parses a valid script with net/http, skipping interim 1xx
// responses, for comparison with what candor forwarded.
func reference(t *testing.T, s fault.Script) (*http.Response, []byte) {
	t.Helper()
	raw := s.Bytes
	if s.Name == "pass/cl_list_same" {
		// RFC 9110 §8.6 lets a recipient treat "5, 5" as 5; net/http
		// rejects it, so the reference sees the single value.
		raw = bytes.Replace(raw, []byte("Content-Length: 5, 5"), []byte("Content-Length: 5"), 1)
	}
	br := bufio.NewReader(bytes.NewReader(raw))
	for {
		resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
		if err != nil {
			t.Fatalf("reference parse of %s: %v", s.Name, err)
		}
		if resp.StatusCode >= 200 {
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("reference body of %s: %v", s.Name, err)
			}
			return resp, b
		}
	}
}

// TestScripts replays every raw upstream byte stream of the fault catalogue
// through the gateway, streaming and strict, and checks the status, the
// body, the log record and that nothing of the upstream leaks.
func TestScripts(t *testing.T) {
	up := faultServer(t)
	_, port := hostPort(t, up.Addr())
	g := startGateway(t, `listen: 127.0.0.1:0
log: {level: debug, access: true}
routes:
  - name: strict
    match: {host: strict.test}
    upstream: u
    strict: {buffer: 1MiB}
  - name: stream
    upstream: u
upstreams:
  u:
    targets: [{url: "`+up.URL()+`"}]
    timeouts: {connect: 1s, response_header: 2s, idle: 2s}
`)
	for _, s := range fault.Scripts() {
		for _, strict := range []bool{false, true} {
			mode := "stream"
			hdr := map[string]string{}
			if strict {
				mode = "strict"
				hdr["Host"] = "strict.test"
			}
			t.Run(mode+"/"+s.Name, func(t *testing.T) {
				id := "test-" + mode + "-" + strings.ReplaceAll(s.Name, "/", "-")
				hdr["X-Request-Id"] = id
				res := get(t, g.base+"/script/"+s.Name, hdr)
				rec := g.log.record(t, id)
				switch {
				case s.Cause == "pass":
					want, wantBody := reference(t, s)
					if res.status != want.StatusCode || res.bodyErr != nil || !bytes.Equal(res.body, wantBody) {
						t.Fatalf("got %d %q (err %v), want %d %q", res.status, res.body, res.bodyErr, want.StatusCode, wantBody)
					}
					if res.header.Get("X-Request-Id") != id {
						t.Fatalf("proxied response lacks X-Request-Id %q: %v", id, res.header)
					}
					if rec["source"] != "upstream" || rec["failure.kind"] != nil {
						t.Fatalf("log record of a valid response: %v", rec)
					}
				case bodyPhase(s.Cause) && !strict && res.status != 502:
					// The status was sent before the body broke: the
					// client must see a broken response. (A body broken
					// from its first byte, when it arrived with the head,
					// gets a 502 instead: the default case.)
					if res.bodyErr == nil {
						t.Fatalf("status %d body %q read completely; want a cut-off response", res.status, res.body)
					}
					if rec["failure.kind"] != s.Cause || rec["aborted"] != true {
						t.Fatalf("log record %v, want failure.kind %s aborted", rec, s.Cause)
					}
				default:
					wantProblem(t, res, 502, s.Cause, ":"+port, string(firstLine(s.Bytes)))
					if rec["failure.kind"] != s.Cause || rec["source"] != "gateway" || rec["upstream"] != "u" ||
						rec["target"] != up.Addr() || rec["failure.detail"] == nil || rec["status"] != float64(502) {
						t.Fatalf("log record %v", rec)
					}
				}
			})
		}
	}
}

func firstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\n'); i > 0 {
		b = b[:i]
	}
	return bytes.TrimSpace(b)
}

// TestUpstreamErrorsPassThrough: an upstream's own well-formed error
// statuses are the upstream's, not relabelled, with headers and body.
func TestUpstreamErrorsPassThrough(t *testing.T) {
	up := faultServer(t)
	g := startGateway(t, oneUpstream(up.URL(), ""))
	for _, code := range []int{400, 404, 500, 502, 503, 504} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			res := get(t, g.base+"/status/"+strconv.Itoa(code), nil)
			want := `{"status":` + strconv.Itoa(code) + `}`
			if res.status != code || strings.TrimSpace(string(res.body)) != want {
				t.Fatalf("got %d %q, want %d %s", res.status, res.body, code, want)
			}
			if ct := res.header.Get("Content-Type"); ct == "application/problem+json" {
				t.Fatalf("an upstream error was rendered as candor's own")
			}
			rec := g.log.record(t, res.header.Get("X-Request-Id"))
			if rec["source"] != "upstream" || rec["status"] != float64(code) {
				t.Fatalf("log record %v", rec)
			}
		})
	}
}

// TestStrictJSON: a strict JSON route rejects malformed JSON with a 502
// and passes valid JSON with an exact Content-Length.
func TestStrictJSON(t *testing.T) {
	up := faultServer(t)
	g := startGateway(t, oneUpstream(up.URL(), "    strict: {buffer: 4KiB, validate: json}"))
	res := get(t, g.base+"/script/pass/invalid_json", nil)
	wantProblem(t, res, 502, "upstream_contract_violation")
	rec := g.log.record(t, res.header.Get("X-Request-Id"))
	if d, _ := rec["failure.detail"].(string); !strings.Contains(d, "invalid JSON") {
		t.Fatalf("detail %q", d)
	}
	if rec["failure.phase"] != "validate" {
		t.Fatalf("phase %v", rec["failure.phase"])
	}

	res = get(t, g.base+"/ok", nil)
	if res.status != 200 || !json.Valid(res.body) || res.header.Get("Content-Length") != strconv.Itoa(len(res.body)) {
		t.Fatalf("valid JSON: %d %q %v", res.status, res.body, res.header)
	}

	res = get(t, g.base+"/big?bytes=5000", nil)
	wantProblem(t, res, 502, "upstream_response_too_large")

	res = get(t, g.base+"/stall-body?ms=3000", nil)
	wantProblem(t, res, 504, "upstream_body_timeout")
}

// TestStreamingBodyFaults: after the status was sent, a stalled or reset
// body is cut off for the client and logged with its cause.
func TestStreamingBodyFaults(t *testing.T) {
	up := faultServer(t)
	g := startGateway(t, oneUpstream(up.URL(), ""))
	res := get(t, g.base+"/stall-body?ms=3000", nil)
	if res.status != 200 || res.bodyErr == nil {
		t.Fatalf("stalled body: %d %q err %v; want 200 cut off", res.status, res.body, res.bodyErr)
	}
	rec := g.log.record(t, res.header.Get("X-Request-Id"))
	if rec["failure.kind"] != "upstream_body_timeout" || rec["aborted"] != true || rec["failure.phase"] != "read_body" {
		t.Fatalf("log record %v", rec)
	}

	// Raw bytes: the response declares Content-Length: 100 and the
	// client gets fewer bytes before the connection closes.
	raw, _ := rawRequest(t, g.st.GatewayAddr(), "GET /stall-body?ms=3000 HTTP/1.1\r\nHost: x\r\n\r\n")
	head, body, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
	if !ok || !bytes.Contains(head, []byte("Content-Length: 100")) || len(body) >= 100 {
		t.Fatalf("raw response not cut short: %q", raw)
	}
}

// TestChunkedCutOff: a chunked upstream body that breaks reaches an
// HTTP/1.1 client without the terminating zero-length chunk.
func TestChunkedCutOff(t *testing.T) {
	up := faultServer(t)
	g := startGateway(t, oneUpstream(up.URL(), ""))
	for _, name := range []string{"upstream_truncated_body/chunked_no_last_chunk"} {
		if _, ok := fault.Lookup(name); !ok {
			t.Fatalf("no script %s", name)
		}
		raw, _ := rawRequest(t, g.st.GatewayAddr(), "GET /script/"+name+" HTTP/1.1\r\nHost: x\r\n\r\n")
		if !bytes.HasPrefix(raw, []byte("HTTP/1.1 200")) || bytes.HasSuffix(raw, []byte("0\r\n\r\n")) {
			t.Fatalf("%s: response not cut off: %q", name, raw)
		}
	}
	// Broken from the first chunk and buffered with the head: nothing was
	// committed, so the client gets a real 502.
	wantProblem(t, get(t, g.base+"/script/upstream_malformed_chunk/size_not_hex", nil), 502, "upstream_malformed_chunk")
}

// TestTimeoutIsNever502: no response head within response_header is a 504.
func TestTimeoutIsNever502(t *testing.T) {
	up := faultServer(t)
	g := startGateway(t, oneUpstream(up.URL(), ""))
	res := get(t, g.base+"/stall-head?ms=5000", nil)
	wantProblem(t, res, 504, "upstream_response_timeout")
	rec := g.log.record(t, res.header.Get("X-Request-Id"))
	if rec["failure.phase"] != "read_head" {
		t.Fatalf("log record %v", rec)
	}
}

// TestConnectionFailures: refused, closed and reset connections.
func TestConnectionFailures(t *testing.T) {
	refused, err := fault.RefusedAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, rport := hostPort(t, refused)
	g := startGateway(t, oneUpstream("http://"+refused, ""))
	res := get(t, g.base+"/", nil)
	wantProblem(t, res, 502, "upstream_connect_refused", ":"+rport)
	rec := g.log.record(t, res.header.Get("X-Request-Id"))
	if rec["failure.phase"] != "connect" || rec["target"] != refused || rec["bytes_sent"] != float64(0) {
		t.Fatalf("log record %v", rec)
	}

	up := faultServer(t)
	g2 := startGateway(t, oneUpstream(up.URL(), ""))
	wantProblem(t, get(t, g2.base+"/close", nil), 502, "upstream_closed_before_response")
	wantProblem(t, get(t, g2.base+"/reset", nil), 502, "upstream_reset_before_response")
}

// TestNoRouteAndNoTarget: 404 without a matching route; 503 with
// Retry-After when the upstream has no target.
func TestNoRouteAndNoTarget(t *testing.T) {
	g := startGateway(t, `listen: 127.0.0.1:0
routes:
  - name: parked
    match: {path_prefix: /parked/}
    upstream: empty
upstreams:
  empty:
    targets: []
`)
	wantProblem(t, get(t, g.base+"/elsewhere", nil), 404, "no_route")
	res := get(t, g.base+"/parked/x", nil)
	wantProblem(t, res, 503, "no_healthy_upstream")
	if ra, err := strconv.Atoi(res.header.Get("Retry-After")); err != nil || ra <= 0 {
		t.Fatalf("Retry-After %q", res.header.Get("Retry-After"))
	}
}

// TestErrorFormats: HTML for browsers, plain text for clients that accept
// neither JSON nor HTML.
func TestErrorFormats(t *testing.T) {
	up := faultServer(t)
	g := startGateway(t, oneUpstream(up.URL(), ""))
	url := g.base + "/script/upstream_malformed_status_line/garbage"
	html := get(t, url, map[string]string{"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"})
	if html.status != 502 || !strings.HasPrefix(html.header.Get("Content-Type"), "text/html") ||
		!bytes.Contains(html.body, []byte("upstream_malformed_status_line")) {
		t.Fatalf("html: %d %v %s", html.status, html.header, html.body)
	}
	noLeak(t, html)
	plain := get(t, url, map[string]string{"Accept": "text/plain"})
	if plain.status != 502 || !strings.HasPrefix(plain.header.Get("Content-Type"), "text/plain") ||
		!bytes.Contains(plain.body, []byte("upstream_malformed_status_line")) {
		t.Fatalf("plain: %d %v %s", plain.status, plain.header, plain.body)
	}
	noLeak(t, plain)
}

// TestForwardedRequest checks exactly what the upstream received.
func TestForwardedRequest(t *testing.T) {
	up := faultServer(t)
	g := startGateway(t, oneUpstream(up.URL(), ""))
	res := get(t, g.base+"/echo?q=1", map[string]string{
		"X-Request-Id":    "client-id-1",
		"Connection":      "X-Secret-Hop",
		"X-Secret-Hop":    "must not pass",
		"X-Forwarded-For": "6.6.6.6",
		"Keep-Alive":      "timeout=5",
		"X-Custom":        "kept",
	})
	if res.status != 200 || res.header.Get("X-Request-Id") != "client-id-1" {
		t.Fatalf("echo: %d %v", res.status, res.header)
	}
	var got []fault.Received
	for _, r := range up.Received() {
		if strings.HasPrefix(r.Target, "/echo") {
			got = append(got, r)
		}
	}
	if len(got) != 1 {
		t.Fatalf("upstream received %d echo requests", len(got))
	}
	r := got[0]
	if r.Method != "GET" || r.Target != "/echo?q=1" || r.Proto != "HTTP/1.1" {
		t.Fatalf("request line %s %s %s", r.Method, r.Target, r.Proto)
	}
	fields := map[string][]string{}
	for _, f := range r.Header {
		k := http.CanonicalHeaderKey(f[0])
		fields[k] = append(fields[k], f[1])
	}
	for _, gone := range []string{"Connection", "X-Secret-Hop", "Keep-Alive", "Content-Length", "Transfer-Encoding"} {
		if v, ok := fields[gone]; ok {
			t.Errorf("upstream received %s: %v", gone, v)
		}
	}
	want := map[string]string{
		"X-Request-Id": "client-id-1", "X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http",
		"X-Custom": "kept",
	}
	for k, v := range want {
		if len(fields[k]) != 1 || fields[k][0] != v {
			t.Errorf("upstream received %s = %v, want [%s]", k, fields[k], v)
		}
	}
	if len(fields["Host"]) != 1 || fields["Host"][0] != strings.TrimPrefix(g.base, "http://") {
		t.Errorf("Host %v", fields["Host"])
	}
}

// TestRequestBodies: fixed-length and chunked request bodies arrive
// intact.
func TestRequestBodies(t *testing.T) {
	up := faultServer(t)
	g := startGateway(t, oneUpstream(up.URL(), ""))
	payload := strings.Repeat("abcdefgh", 10000)
	res := do(t, "POST", g.base+"/echo", nil, strings.NewReader(payload))
	if res.status != 200 {
		t.Fatalf("POST: %d %s", res.status, res.body)
	}
	// An io.Reader of unknown length makes net/http send chunked.
	res = do(t, "POST", g.base+"/echo", nil, io.MultiReader(strings.NewReader(payload)))
	if res.status != 200 {
		t.Fatalf("chunked POST: %d %s", res.status, res.body)
	}
	var n int
	for _, r := range up.Received() {
		if r.Method == "POST" {
			n++
			if string(r.Body) != payload {
				t.Fatalf("upstream got %d body bytes, want %d", len(r.Body), len(payload))
			}
		}
	}
	if n != 2 {
		t.Fatalf("upstream got %d POSTs", n)
	}
}

// TestRequestID: a sane client id is kept; a hostile one is replaced.
func TestRequestID(t *testing.T) {
	up := faultServer(t)
	g := startGateway(t, oneUpstream(up.URL(), ""))
	res := get(t, g.base+"/ok", map[string]string{"X-Request-Id": "<script>alert(1)</script>"})
	id := res.header.Get("X-Request-Id")
	if id == "" || strings.Contains(id, "<") {
		t.Fatalf("hostile id kept: %q", id)
	}
	res = get(t, g.base+"/close", map[string]string{"X-Request-Id": "abc.123"})
	if p := wantProblem(t, res, 502, "upstream_closed_before_response"); p.RequestID != "abc.123" {
		t.Fatalf("id %q", p.RequestID)
	}
}

// TestHEAD: a HEAD response passes its Content-Length without a body.
func TestHEAD(t *testing.T) {
	up := faultServer(t)
	g := startGateway(t, oneUpstream(up.URL(), ""))
	res := do(t, "HEAD", g.base+"/big?bytes=1234", nil, nil)
	if res.status != 200 || res.header.Get("Content-Length") != "1234" || len(res.body) != 0 {
		t.Fatalf("HEAD: %d %v %q", res.status, res.header, res.body)
	}
}

// TestKeepAliveReuse: sequential requests reuse one upstream connection.
func TestKeepAliveReuse(t *testing.T) {
	up := faultServer(t)
	g := startGateway(t, oneUpstream(up.URL(), ""))
	for i := range 20 {
		if res := get(t, g.base+"/ok", nil); res.status != 200 {
			t.Fatalf("request %d: %d", i, res.status)
		}
	}
	reused := 0
	for _, r := range g.log.records(t) {
		if r["reused"] == true {
			reused++
		}
	}
	if reused < 19 {
		t.Fatalf("%d of 20 requests reused a connection", reused)
	}
}

// TestKeepAliveRace: the upstream closes each idle connection about 30 ms
// after its response (without saying so), and requests arrive every 30 ms,
// so candor keeps trying to reuse connections just as the upstream closes
// them. The probe before reuse and the replay of idempotent requests on a
// fresh connection must turn every one of those races into a success.
func TestKeepAliveRace(t *testing.T) {
	up := faultServer(t)
	g := startGateway(t, `listen: 127.0.0.1:0
routes:
  - {name: r, upstream: u}
upstreams:
  u:
    targets: [{url: "`+up.URL()+`"}]
    timeouts: {pool_idle: 10s}
`)
	tick := time.NewTicker(30 * time.Millisecond)
	defer tick.Stop()
	const n = 150
	failed := 0
	for i := range n {
		<-tick.C
		res := get(t, g.base+"/ok?idle_ms=30", nil)
		if res.status != 200 || res.bodyErr != nil {
			failed++
			t.Errorf("request %d: %d %s", i, res.status, res.body)
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d requests failed in the keep-alive race", failed, n)
	}
}

// rawUpstream answers every request on every connection with the given
// raw response bytes, then closes.
func rawUpstream(t *testing.T, response string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
				}
				io.WriteString(c, response)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// TestNoContentTypeSniffing: an upstream response without Content-Type
// reaches the client without one; the gateway never labels an upstream's
// body (an HTML-looking body would otherwise become text/html).
func TestNoContentTypeSniffing(t *testing.T) {
	body := "<html><script>alert(1)</script></html>"
	up := rawUpstream(t, "HTTP/1.1 200 OK\r\nX-Content-Type-Options: nosniff\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\nConnection: close\r\n\r\n"+body)
	g := startGateway(t, oneUpstream(up, ""))
	res := get(t, g.base+"/", nil)
	if res.status != 200 || string(res.body) != body {
		t.Fatalf("got %d %q", res.status, res.body)
	}
	if ct, ok := res.header["Content-Type"]; ok {
		t.Fatalf("gateway added Content-Type %q", ct)
	}
}

// TestHalfClosingClient: a client that half-closes after its request gets
// either the real answer or a cut connection, never a fabricated 200.
func TestHalfClosingClient(t *testing.T) {
	up := faultServer(t)
	g := startGateway(t, oneUpstream(up.URL(), ""))
	c, err := net.Dial("tcp", g.st.GatewayAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /stall-head?ms=300 HTTP/1.1\r\nHost: x\r\n\r\n")
	c.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(c)
	if len(got) > 0 && !bytes.Contains(got, []byte(`"ok":true`)) {
		t.Fatalf("half-closing client got a response that is not the upstream's: %q", got)
	}
}

// TestSpoofedForwardingFields: forwarding fields a client sends are not
// passed on, whatever their spelling.
func TestSpoofedForwardingFields(t *testing.T) {
	up := faultServer(t)
	g := startGateway(t, oneUpstream(up.URL(), ""))
	raw, _ := rawRequest(t, g.st.GatewayAddr(), "GET /echo HTTP/1.1\r\nHost: x\r\nForwarded: for=6.6.6.6\r\nX-Real-Ip: 6.6.6.6\r\nX_Forwarded_For: 6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n")
	if !bytes.HasPrefix(raw, []byte("HTTP/1.1 200")) {
		t.Fatalf("echo: %q", raw)
	}
	for _, r := range up.Received() {
		for _, f := range r.Header {
			if strings.Contains(f[1], "6.6.6.6") {
				t.Errorf("upstream received spoofed %s: %s", f[0], f[1])
			}
		}
	}
}

// TestCONNECTRefused: CONNECT is answered 501 and never forwarded.
func TestCONNECTRefused(t *testing.T) {
	up := faultServer(t)
	g := startGateway(t, oneUpstream(up.URL(), ""))
	c, err := net.Dial("tcp", g.st.GatewayAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "CONNECT internal.example:22 HTTP/1.1\r\nHost: internal.example:22\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 501 || !bytes.Contains(body, []byte("request_method_not_supported")) {
		t.Fatalf("CONNECT: %d %q", resp.StatusCode, body)
	}
	if up.Requests() != 0 {
		t.Fatalf("upstream received %d requests", up.Requests())
	}
}

// TestAccessLogQueryAndSampling: query strings are not logged unless asked
// for; with sample 0 no success is logged, and failures always are.
func TestAccessLogQueryAndSampling(t *testing.T) {
	up := faultServer(t)
	g := startGateway(t, oneUpstream(up.URL(), ""))
	get(t, g.base+"/ok?token=secret", map[string]string{"X-Request-Id": "q-1"})
	if rec := g.log.record(t, "q-1"); rec["path"] != "/ok" {
		t.Fatalf("path %v: the query was logged", rec["path"])
	}
	g2 := startGateway(t, strings.Replace(oneUpstream(up.URL(), ""), "log: {level: debug, access: true}", "log: {level: debug, access: true, query: true, sample: 0}", 1))
	get(t, g2.base+"/ok?page=2", map[string]string{"X-Request-Id": "q-2"})
	get(t, g2.base+"/close?page=3", map[string]string{"X-Request-Id": "q-3"})
	if rec := g2.log.record(t, "q-3"); rec["path"] != "/close?page=3" {
		t.Fatalf("failure record path %v", rec["path"])
	}
	for _, r := range g2.log.records(t) {
		if r["request_id"] == "q-2" {
			t.Fatalf("a success was logged with sample 0: %v", r)
		}
	}
}

// TestAccessLogOff: without log.access only failures are logged, whatever
// the level.
func TestAccessLogOff(t *testing.T) {
	up := faultServer(t)
	g := startGateway(t, strings.Replace(oneUpstream(up.URL(), ""), "access: true", "access: false", 1))
	get(t, g.base+"/ok", map[string]string{"X-Request-Id": "off-1"})
	get(t, g.base+"/close", map[string]string{"X-Request-Id": "off-2"})
	if rec := g.log.record(t, "off-2"); rec["failure.kind"] == nil {
		t.Fatalf("failure record without a cause: %v", rec)
	}
	for _, r := range g.log.records(t) {
		if r["request_id"] == "off-1" {
			t.Fatalf("a success was logged with the access log off: %v", r)
		}
	}
}
