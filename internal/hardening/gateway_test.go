package hardening_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"candor/internal/config"
	"candor/internal/reload"
)

// gateway is a running candor, started exactly as `candor run` starts it:
// config.Parse, then reload.Start on a real listener.
type gateway struct {
	addr string
	log  *logBuffer
}

// startGateway runs candor with the configuration text yaml until the end
// of the test.
func startGateway(tb testing.TB, yaml string) *gateway {
	tb.Helper()
	cfg, err := config.Parse("hardening.yaml", []byte(yaml))
	if err != nil {
		tb.Fatalf("config: %v\n%s", err, yaml)
	}
	lb := &logBuffer{}
	log := slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st, err := reload.Start(cfg, log)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st.Shutdown(ctx)
	})
	return &gateway{addr: st.GatewayAddr(), log: lb}
}

// logBuffer collects the gateway's log, safe for concurrent writes, so that
// a failing case can show what the gateway said about it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() > 8<<20 {
		l.buf.Reset() // bounded: a long fuzz run logs a lot
	}
	return l.buf.Write(p)
}

// mark returns the current end of the log.
func (l *logBuffer) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Len()
}

// since returns the log written after mark (at most its last 8 KiB).
func (l *logBuffer) since(mark int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buf.Bytes()
	if mark > len(b) {
		mark = 0
	}
	b = b[mark:]
	if len(b) > 8<<10 {
		b = b[len(b)-8<<10:]
	}
	return string(b)
}

// Server settings of the test gateways: small limits and timeouts, so that
// the limits are cheap to cross and the timeouts quick to reach.
const (
	testMaxRequestLine  = 1024
	testMaxHeaderBytes  = 4096
	testMaxHeaderFields = 20
	testReadHeader      = 300 * time.Millisecond
	testBodyTimeout     = 500 * time.Millisecond
	// testMaxBody is the max_body of the /small route.
	testMaxBody = 16
	// testMediumBody is the max_body of the /medium route: more than
	// the gateway buffers before it forwards, so that a body crossing it
	// is cut off while it is being forwarded.
	testMediumBody = 32 << 10
	// forwardedSize is a body part large enough that the gateway has
	// begun forwarding it before it reads what follows.
	forwardedSize = 40000
)

// batteryConfig is the battery's configuration: /small and /medium routes
// with small max_body limits, a /ws route that allows WebSocket upgrades,
// and a default route, all to up; trusted is the trusted_proxies CIDR.
func batteryConfig(up, trusted string) string {
	return `listen: 127.0.0.1:0
log: {level: debug, access: false}
server:
  max_request_line: ` + strconv.Itoa(testMaxRequestLine) + `
  max_header_bytes: ` + strconv.Itoa(testMaxHeaderBytes) + `
  max_header_fields: ` + strconv.Itoa(testMaxHeaderFields) + `
  read_header_timeout: ` + testReadHeader.String() + `
  body_timeout: ` + testBodyTimeout.String() + `
trusted_proxies: [` + trusted + `]
routes:
  - name: small
    match: {path_prefix: /small}
    upstream: u
    max_body: ` + strconv.Itoa(testMaxBody) + `
  - name: medium
    match: {path_prefix: /medium}
    upstream: u
    max_body: ` + strconv.Itoa(testMediumBody) + `
  - name: ws
    match: {path_prefix: /ws}
    upstream: u
    upgrade: {protocols: [websocket]}
  - name: main
    upstream: u
upstreams:
  u:
    targets: [{url: "` + up + `"}]
    timeouts: {connect: 1s, response_header: 2s, idle: 2s}
`
}

// Client-side bounds.
const (
	// caseTimeout bounds everything one client connection does.
	caseTimeout = 10 * time.Second
	// closeWait bounds the wait for the gateway to close a connection
	// it must close; generous against the test timeouts (300ms, 500ms)
	// so that a loaded machine does not fail a correct gateway.
	closeWait = 5 * time.Second
)

// response is one response as the client read it.
type response struct {
	status int
	header http.Header
	body   []byte
	// cause is the "cause" of a problem+json body, "" for others.
	cause string
	// seq is the recording upstream's X-Seq: the response came from the
	// upstream request with that number; 0 for the gateway's own.
	seq int
	// close: the response says the connection closes after it
	// ("Connection: close", or HTTP/1.0 without keep-alive).
	close bool
}

func (r *response) String() string {
	if r == nil {
		return "no response"
	}
	s := strconv.Itoa(r.status)
	if r.cause != "" {
		s += " " + r.cause
	}
	if r.seq != 0 {
		s += " (upstream #" + strconv.Itoa(r.seq) + ")"
	}
	return s
}

// readResponse reads one final response to a request with method,
// returning the statuses of the interim (1xx) responses before it.
func readResponse(br *bufio.Reader, method string) (*response, []int, error) {
	var interim []int
	for range 10 { // a bounded number of interim responses
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			return nil, interim, err
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			return nil, interim, err
		}
		if resp.StatusCode < 200 {
			interim = append(interim, resp.StatusCode)
			continue
		}
		r := &response{status: resp.StatusCode, header: resp.Header, body: body, close: resp.Close}
		if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
			var p struct {
				Cause string `json:"cause"`
			}
			if err := json.Unmarshal(body, &p); err != nil {
				return nil, interim, errors.New("problem body is not JSON: " + string(body))
			}
			r.cause = p.Cause
		}
		if s := resp.Header.Get("X-Seq"); s != "" {
			r.seq, _ = strconv.Atoi(s)
		}
		return r, interim, nil
	}
	return nil, interim, errors.New("more than 10 interim responses")
}

// readToEOF reads what is left on the connection until the gateway closes
// it or d passes. It returns the bytes read and nil at a clean end (FIN, or
// a reset after everything was read), os.ErrDeadlineExceeded if the
// connection was still open at the deadline, or another read error.
func readToEOF(c net.Conn, br *bufio.Reader, d time.Duration) ([]byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(io.LimitReader(br, 1<<20))
	if err == nil || errors.Is(err, syscall.ECONNRESET) {
		return b, nil
	}
	return b, err
}

// dial opens a client connection to the gateway with an overall deadline.
func dial(tb testing.TB, addr string) net.Conn {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(caseTimeout))
	return c
}

// waitReadable waits up to d for the gateway to send something (or close),
// without consuming it; it reports whether it did.
func waitReadable(c net.Conn, br *bufio.Reader, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := br.Peek(1)
	_ = c.SetReadDeadline(time.Now().Add(caseTimeout))
	return !errors.Is(err, os.ErrDeadlineExceeded)
}

// Fields candor adds or replaces itself: excluded when requests are
// compared, and checked on their own by the forwarding cases.
var ownFields = []string{
	"x-request-id", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
	"forwarded", "traceparent", "tracestate",
}

// framingFields describe the body's framing, which candor chooses for the
// upstream connection; the recording upstream checks them strictly and
// the comparison looks at the decoded body instead.
var framingFields = []string{"content-length", "transfer-encoding"}

// shape is a request's fields in comparable form: names lower-cased, own
// and framing fields left out, same-name values joined with ", " in order
// (RFC 9110 §5.3: the order of different names carries no meaning; the
// order of one name's lines does), sorted by name.
func shape(fields []field, ignore ...string) []string {
	byName := map[string][]string{}
	var names []string
	for _, f := range fields {
		n := strings.ToLower(f.name)
		if slices.Contains(ownFields, n) || slices.Contains(framingFields, n) || slices.Contains(ignore, n) {
			continue
		}
		if _, ok := byName[n]; !ok {
			names = append(names, n)
		}
		byName[n] = append(byName[n], f.value)
	}
	slices.Sort(names)
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = n + ": " + strings.Join(byName[n], ", ")
	}
	return out
}

// parseFields turns "Name: value" strings into fields.
func parseFields(lines []string) []field {
	out := make([]field, len(lines))
	for i, l := range lines {
		n, v, _ := strings.Cut(l, ":")
		out[i] = field{n, strings.Trim(v, " \t")}
	}
	return out
}
