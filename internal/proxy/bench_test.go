package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"candor/internal/config"
	"candor/internal/reload"
)

// The benchmarks in this file measure one whole proxied request through the
// real gateway: reload.Start with a configuration, exactly as `candor run`
// builds it (router, balancer, passive health, limiter, retry budget,
// metrics, recent failures), behind candor's net/http listener, in front of
// a raw-TCP keep-alive upstream on loopback that answers every request with
// a fixed response from memory. The client is a raw loopback connection
// writing one request at a time and reading the response with a minimal
// parser, so that the client's and the upstream's own costs are small and
// allocation-free: allocs/op is candor's allocations per proxied request.
//
// Run them with
//
//	go test -run '^$' -bench BenchmarkProxy -benchmem ./internal/proxy

// fixedUpstream is a raw-TCP HTTP/1.1 upstream that answers every request
// on every keep-alive connection with the same bytes.
type fixedUpstream struct {
	ln   net.Listener
	resp []byte
	wg   sync.WaitGroup
	mu   sync.Mutex
	cs   map[net.Conn]struct{}
}

// startFixed starts a fixed upstream answering status 200 with body and
// Content-Type contentType.
func startFixed(tb testing.TB, contentType string, body []byte) *fixedUpstream {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	head := "HTTP/1.1 200 OK\r\nContent-Type: " + contentType + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	u := &fixedUpstream{ln: ln, resp: append([]byte(head), body...), cs: map[net.Conn]struct{}{}}
	u.wg.Add(1)
	go u.accept()
	tb.Cleanup(u.close)
	return u
}

func (u *fixedUpstream) url() string { return "http://" + u.ln.Addr().String() }

func (u *fixedUpstream) accept() {
	defer u.wg.Done()
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		u.mu.Lock()
		u.cs[c] = struct{}{}
		u.mu.Unlock()
		u.wg.Add(1)
		go u.serve(c)
	}
}

// serve answers each request head (requests carry no body) with u.resp.
func (u *fixedUpstream) serve(c net.Conn) {
	defer u.wg.Done()
	defer c.Close()
	br := bufio.NewReaderSize(c, 8192)
	for {
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) == 2 {
				break // the empty line ending the head
			}
		}
		if _, err := c.Write(u.resp); err != nil {
			return
		}
	}
}

func (u *fixedUpstream) close() {
	u.ln.Close()
	u.mu.Lock()
	for c := range u.cs {
		c.Close()
	}
	u.mu.Unlock()
	u.wg.Wait()
}

// rawClient is a keep-alive HTTP/1.1 client on one loopback connection
// with a minimal response parser: status, Content-Length, body discarded.
type rawClient struct {
	c   net.Conn
	br  *bufio.Reader
	req []byte
}

func dialRaw(tb testing.TB, addr, path string) *rawClient {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return &rawClient{c: c, br: bufio.NewReaderSize(c, 64<<10), req: []byte("GET " + path + " HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")}
}

var errBadResponse = errors.New("bad response")

// do sends one request and reads its response, returning the status and
// the body length.
func (rc *rawClient) do() (status int, n int, err error) {
	if _, err := rc.c.Write(rc.req); err != nil {
		return 0, 0, err
	}
	line, err := rc.br.ReadSlice('\n')
	if err != nil {
		return 0, 0, err
	}
	if len(line) < 12 {
		return 0, 0, errBadResponse
	}
	status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	cl := -1
	for {
		line, err := rc.br.ReadSlice('\n')
		if err != nil {
			return 0, 0, err
		}
		if len(line) == 2 {
			break
		}
		if len(line) > 16 && (line[0] == 'C' || line[0] == 'c') && bytes.EqualFold(line[:15], []byte("Content-Length:")) {
			cl = 0
			for _, b := range bytes.TrimSpace(line[15:]) {
				cl = cl*10 + int(b-'0')
			}
		}
	}
	if cl < 0 {
		return 0, 0, errBadResponse // the benchmarks' responses all have one
	}
	d, err := rc.br.Discard(cl)
	return status, d, err
}

// benchGateway starts candor with yaml (access log off, failures logged as
// JSON to io.Discard at info level, as in production) and returns its
// address.
func benchGateway(tb testing.TB, yaml string) string {
	tb.Helper()
	cfg, err := config.Parse("bench.yaml", []byte(yaml))
	if err != nil {
		tb.Fatalf("config: %v\n%s", err, yaml)
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	st, err := reload.Start(cfg, log)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st.Shutdown(ctx)
	})
	return st.GatewayAddr()
}

// benchConfig is one route to url; route holds extra route keys, up extra
// upstream keys (each line indented as a key of the route or upstream).
func benchConfig(url, route, up string) string {
	return `listen: 127.0.0.1:0
log: {access: false}
routes:
  - name: r
    upstream: u
` + route + `
upstreams:
  u:
    targets: [{url: "` + url + `"}]
` + up + `
`
}

// runProxy runs the benchmark loop against a gateway at addr, checking each
// response's status and body length.
func runProxy(b *testing.B, addr string, status, size int) {
	rc := dialRaw(b, addr, "/bench/path?q=1")
	// Warm up: the connection pool, metric children, buffers.
	for range 100 {
		if s, n, err := rc.do(); err != nil || s != status || (size >= 0 && n != size) {
			b.Fatalf("warm-up: status %d, %d body bytes, %v; want %d, %d", s, n, err, status, size)
		}
	}
	b.ReportAllocs()
	if size > 0 {
		b.SetBytes(int64(size))
	}
	cpu := cpuTime()
	for b.Loop() {
		s, n, err := rc.do()
		if err != nil || s != status || (size >= 0 && n != size) {
			b.Fatalf("status %d, %d body bytes, %v; want %d, %d", s, n, err, status, size)
		}
	}
	reportCPU(b, cpu)
}

// cpuTime returns the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process's CPU time per operation since start
// (gateway, upstream and client together) as cpu-ns/op: on shared, noisy
// cores it varies less than the wall time, and it is what a gateway costs.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkProxyGET is a 100-byte 200 passed through a streaming route.
func BenchmarkProxyGET(b *testing.B) {
	up := startFixed(b, "text/plain", bytes.Repeat([]byte("x"), 100))
	runProxy(b, benchGateway(b, benchConfig(up.url(), "", "")), 200, 100)
}

// BenchmarkProxyGETAccessLog is BenchmarkProxyGET with the access log on:
// one JSON record per request (to io.Discard).
func BenchmarkProxyGETAccessLog(b *testing.B) {
	up := startFixed(b, "text/plain", bytes.Repeat([]byte("x"), 100))
	yaml := strings.Replace(benchConfig(up.url(), "", ""), "access: false", "access: true", 1)
	runProxy(b, benchGateway(b, yaml), 200, 100)
}

// BenchmarkProxyGETParallel is BenchmarkProxyGET from several client
// connections at once (GOMAXPROCS x 4), which keeps the cores busy: its
// ns/op is the gateway's throughput cost per request rather than one
// request's round-trip latency.
func BenchmarkProxyGETParallel(b *testing.B) {
	up := startFixed(b, "text/plain", bytes.Repeat([]byte("x"), 100))
	addr := benchGateway(b, benchConfig(up.url(), "", ""))
	rc := dialRaw(b, addr, "/bench/path?q=1")
	for range 100 {
		if s, _, err := rc.do(); err != nil || s != 200 {
			b.Fatalf("warm-up: status %d, %v", s, err)
		}
	}
	var mu sync.Mutex
	b.ReportAllocs()
	b.SetParallelism(4)
	cpu := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		rc := dialRaw(b, addr, "/bench/path?q=1")
		mu.Unlock()
		for pb.Next() {
			if s, n, err := rc.do(); err != nil || s != 200 || n != 100 {
				b.Errorf("status %d, %d body bytes, %v", s, n, err)
				return
			}
		}
	})
	reportCPU(b, cpu)
}

// BenchmarkProxyGET16K is a 16 KiB 200 passed through a streaming route.
func BenchmarkProxyGET16K(b *testing.B) {
	up := startFixed(b, "application/octet-stream", bytes.Repeat([]byte("x"), 16<<10))
	runProxy(b, benchGateway(b, benchConfig(up.url(), "", "")), 200, 16<<10)
}

// benchJSON returns a valid JSON document of exactly n bytes (n >= 64).
func benchJSON(n int) []byte {
	var sb strings.Builder
	sb.WriteString(`{"items":[`)
	for i := 0; sb.Len() < n-64; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{"id":` + strconv.Itoa(i) + `,"name":"item","ok":true}`)
	}
	sb.WriteString(`],"pad":"`)
	for sb.Len() < n-2 {
		sb.WriteByte('p')
	}
	sb.WriteString(`"}`)
	return []byte(sb.String())
}

// BenchmarkProxyStrictJSON is a 16 KiB JSON 200 through a strict route
// that buffers and validates it.
func BenchmarkProxyStrictJSON(b *testing.B) {
	body := benchJSON(16 << 10)
	up := startFixed(b, "application/json", body)
	runProxy(b, benchGateway(b, benchConfig(up.url(), "    strict: {buffer: 1MiB, validate: json}", "")), 200, len(body))
}

// BenchmarkProxyStreamJSON is the same JSON response through a streaming
// route: the baseline of BenchmarkProxyStrictJSON.
func BenchmarkProxyStreamJSON(b *testing.B) {
	body := benchJSON(16 << 10)
	up := startFixed(b, "application/json", body)
	runProxy(b, benchGateway(b, benchConfig(up.url(), "", "")), 200, len(body))
}

// BenchmarkProxyError is a refused connection rendered as candor's 502
// problem+json (logged at warn, counted), with retries and passive health
// off so that every request takes the same path.
func BenchmarkProxyError(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there any more: connection refused
	addr := benchGateway(b, benchConfig(url, "    retry: {attempts: 1}", "    health: {passive: {consecutive_failures: 0}}"))
	runProxy(b, addr, 502, -1)
}

// TestBenchJSON checks the benchmark's JSON body.
func TestBenchJSON(t *testing.T) {
	body := benchJSON(16 << 10)
	if len(body) != 16<<10 {
		t.Fatalf("len %d", len(body))
	}
	if !json.Valid(body) {
		t.Fatalf("invalid JSON")
	}
}

// TestProxyAllocs measures the allocations of one whole proxied request,
// testing.AllocsPerRun-style (every goroutine's: the gateway's, and the
// upstream's and client's, which allocate nothing), logs them, and holds
// them under a ceiling so that a change adding allocations to the request
// path is noticed. About 16 of them are net/http's own (request parsing,
// the response header's clone, the server's contexts), and the
// cancellation hook's context.AfterFunc costs 5; see docs/profile.md.
func TestProxyAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	doc := benchJSON(16 << 10)
	refused, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedURL := "http://" + refused.Addr().String()
	refused.Close()
	for _, tc := range []struct {
		name         string
		upstream     func() string
		route, up    string
		status, size int
		max          float64
	}{
		{"get_100B", func() string { return startFixed(t, "text/plain", bytes.Repeat([]byte("x"), 100)).url() }, "", "", 200, 100, 32},
		{"get_16KiB", func() string { return startFixed(t, "text/plain", bytes.Repeat([]byte("x"), 16<<10)).url() }, "", "", 200, 16 << 10, 32},
		{"strict_json_16KiB", func() string { return startFixed(t, "application/json", doc).url() }, "    strict: {buffer: 1MiB, validate: json}", "", 200, len(doc), 32},
		{"error_502", func() string { return refusedURL }, "    retry: {attempts: 1}", "    health: {passive: {consecutive_failures: 0}}", 502, -1, 68},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := benchGateway(t, benchConfig(tc.upstream(), tc.route, tc.up))
			rc := dialRaw(t, addr, "/bench/path?q=1")
			do := func() {
				if s, n, err := rc.do(); err != nil || s != tc.status || (tc.size >= 0 && n != tc.size) {
					t.Fatalf("status %d, %d body bytes, %v; want %d, %d", s, n, err, tc.status, tc.size)
				}
			}
			for range 200 {
				do()
			}
			n := testing.AllocsPerRun(500, do)
			t.Logf("%.0f allocations per proxied request", n)
			if n > tc.max {
				t.Errorf("%.0f allocations per proxied request, want at most %.0f", n, tc.max)
			}
		})
	}
}
