package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"candor/internal/config"
	"candor/internal/fault"
	"candor/internal/reload"
)

// logBuffer collects JSON log lines, safe for concurrent writes. Each
// write signals wrote, so that a reader waits for a record rather than
// polling.
type logBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	wrote chan struct{} // buffered 1: "something was written"
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wrote == nil {
		l.wrote = make(chan struct{}, 1)
	}
	select {
	case l.wrote <- struct{}{}:
	default:
	}
	return l.buf.Write(p)
}

// written returns the channel signalled by writes.
func (l *logBuffer) written() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wrote == nil {
		l.wrote = make(chan struct{}, 1)
	}
	return l.wrote
}

// records returns the decoded log records.
func (l *logBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(l.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %q", err, line)
		}
		out = append(out, m)
	}
	return out
}

// record waits (bounded) for the log record of request id and returns it.
// The record is written when the handler returns, which may be just after
// the client saw the response.
func (l *logBuffer) record(t *testing.T, id string) map[string]any {
	t.Helper()
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	for {
		for _, r := range l.records(t) {
			if r["request_id"] == id {
				return r
			}
		}
		select {
		case <-l.written():
		case <-timeout.C:
			t.Fatalf("no log record for request %s; log:\n%s", id, l.buf.String())
		}
	}
}

// gateway is a running candor in front of test upstreams.
type gateway struct {
	st   *reload.State
	base string
	log  *logBuffer
}

// startGateway runs candor with the configuration text yaml, exactly as
// `candor run` does: config.Parse, then reload.Start on a real listener.
func startGateway(t *testing.T, yaml string) *gateway {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	lb := &logBuffer{}
	log := slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st, err := reload.Start(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st.Shutdown(ctx)
	})
	return &gateway{st: st, base: "http://" + st.GatewayAddr(), log: lb}
}

// oneUpstream is a configuration with one default route to url.
func oneUpstream(url, extra string) string {
	return `listen: 127.0.0.1:0
log: {level: debug, access: true}
routes:
  - name: r
    upstream: u
` + extra + `
upstreams:
  u:
    targets: [{url: "` + url + `"}]
    timeouts: {connect: 1s, response_header: 1s, idle: 500ms}
`
}

// faultServer starts a fault upstream closed at the end of the test.
func faultServer(t *testing.T) *fault.Server {
	t.Helper()
	s, err := fault.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// client is an HTTP client that never reuses connections between tests and
// does not follow redirects.
func client() *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true, DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// result is a response as the client saw it.
type result struct {
	status  int
	header  http.Header
	body    []byte
	bodyErr error // error reading the body: a cut-off response
}

func get(t *testing.T, url string, hdr map[string]string) result {
	t.Helper()
	return do(t, http.MethodGet, url, hdr, nil)
}

func do(t *testing.T, method, url string, hdr map[string]string, body io.Reader) result {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, berr := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: b, bodyErr: berr}
}

// problem is a decoded problem+json body.
type problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	Instance  string `json:"instance"`
	Cause     string `json:"cause"`
	RequestID string `json:"request_id"`
}

// wantProblem checks that res is candor's problem response for cause with
// the given status, and that it leaks nothing of the upstream.
func wantProblem(t *testing.T, res result, status int, cause string, secrets ...string) problem {
	t.Helper()
	if res.status != status {
		t.Fatalf("status %d, want %d; body %s", res.status, status, res.body)
	}
	if ct := res.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json; body %s", ct, res.body)
	}
	var p problem
	if err := json.Unmarshal(res.body, &p); err != nil {
		t.Fatalf("problem body: %v: %s", err, res.body)
	}
	if p.Cause != cause || p.Status != status {
		t.Fatalf("problem cause %q status %d, want %q %d: %s", p.Cause, p.Status, cause, status, res.body)
	}
	if id := res.header.Get("X-Request-Id"); id == "" || id != p.RequestID || !strings.HasSuffix(p.Instance, id) {
		t.Fatalf("request id: header %q, body %q, instance %q", id, p.RequestID, p.Instance)
	}
	if cc := res.header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("Cache-Control %q, want no-store", cc)
	}
	if (status == 503) != (res.header.Get("Retry-After") != "") {
		t.Fatalf("status %d with Retry-After %q", status, res.header.Get("Retry-After"))
	}
	noLeak(t, res, secrets...)
	return p
}

// noLeak fails when a gateway error exposes an upstream detail: an
// address, a port, a host name, raw upstream bytes or Go error text.
func noLeak(t *testing.T, res result, secrets ...string) {
	t.Helper()
	everything := string(res.body)
	for k, vs := range res.header {
		everything += "\n" + k + ": " + strings.Join(vs, ",")
	}
	leaks := append([]string{"127.0.0.1", "dial tcp", "connection refused", "EOF", "x509", "tls:", "lookup "}, secrets...)
	for _, s := range leaks {
		if s != "" && strings.Contains(everything, s) {
			t.Fatalf("gateway error leaks %q:\n%s", s, everything)
		}
	}
}

// hostPort splits addr, failing the test on error.
func hostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// rawRequest sends raw request bytes to addr and returns everything read
// until the connection closes (bounded by 10 s).
func rawRequest(t *testing.T, addr, req string) ([]byte, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return io.ReadAll(bufio.NewReader(c))
}

func newTestLogger(lb *logBuffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
