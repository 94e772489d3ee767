package proxy_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"candor/internal/failure"
	"candor/internal/proxy"
	"candor/internal/retry"
	"candor/internal/router"
	"candor/internal/upstream"
)

// failingBody returns data, then err.
type failingBody struct {
	data string
	err  error
}

func (b *failingBody) Read(p []byte) (int, error) {
	if b.data == "" {
		return 0, b.err
	}
	n := copy(p, b.data)
	b.data = b.data[n:]
	return n, nil
}

// onlyTarget picks its one target.
type onlyTarget struct{ tg *upstream.Target }

func (p onlyTarget) Pick(string) *upstream.Target { return p.tg }

// reports records passive-health reports.
type reports struct {
	mu  sync.Mutex
	got []string
}

func (r *reports) Report(_ *upstream.Target, fe *failure.Error, status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if fe != nil {
		r.got = append(r.got, fe.Kind.String())
	} else {
		r.got = append(r.got, http.StatusText(status))
	}
}

// TestClientBodyErrors drives the handler with request bodies that fail
// mid-stream the ways a downstream server's body reader does (its own
// *failure.Error) and the ways net/http's does (plain errors), over a
// real upstream connection: each becomes the client's cause, never a 502,
// is never reported to passive health nor retried, and the upstream
// connection is discarded with the request incomplete.
func TestClientBodyErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
		cause  string
	}{
		{"server: bad chunking", failure.New(failure.ClientBodyInvalid, "chunk size line: bare LF"), 400, "client_body_invalid"},
		{"server: stalled body", failure.New(failure.RequestTimeout, "no body byte for 30s"), 408, "request_timeout"},
		{"server: client gone", failure.New(failure.ClientCanceled, "body shorter than its Content-Length"), 499, "client_canceled"},
		{"server: too large", failure.New(failure.RequestBodyTooLarge, ""), 413, "request_body_too_large"},
		{"net/http: malformed chunking", errors.New("malformed chunked encoding"), 400, "client_body_invalid"},
		{"net/http: client closed", io.ErrUnexpectedEOF, 499, "client_canceled"},
		{"net/http: read timeout", os.ErrDeadlineExceeded, 408, "request_timeout"},
		{"net/http: MaxBytesReader", &http.MaxBytesError{Limit: 10}, 413, "request_body_too_large"},
	} {
		for _, length := range []int64{-1, 100000} {
			name := tc.name + "/chunked"
			if length > 0 {
				name = tc.name + "/content-length"
			}
			t.Run(name, func(t *testing.T) {
				up := startRecording(t)
				tr, err := upstream.New(upstream.Options{
					Name: "u", ConnectTimeout: time.Second, ResponseHeaderTimeout: 5 * time.Second,
					IdleTimeout: 5 * time.Second, PoolIdle: time.Minute, MaxIdlePerTarget: 4,
					HeadLimits: upstream.Limits{Bytes: 64 << 10, Fields: 100},
				}, []string{up.url()})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(tr.Close)
				tg := tr.Targets()[0]
				health := &reports{}
				rt := &proxy.Route{
					Name: "r", Upstream: tr, Picker: onlyTarget{tg}, Health: health,
					Retry: proxy.Retry{Attempts: 3, BodyBuffer: 64 << 10, Budget: retry.NewBudget(1, 100, nil)},
				}
				lb := &logBuffer{}
				h := proxy.New(&proxy.Table{Router: router.New([]router.Rule{{}}), Routes: []*proxy.Route{rt}},
					proxy.Options{Log: newTestLogger(lb)})

				// 40 KiB go upstream before the body fails: more than
				// the transport's write buffer, so the upstream sees
				// part of the request.
				body := &failingBody{data: strings.Repeat("a", 40<<10), err: tc.err}
				req := httptest.NewRequest("POST", "http://example.test/upload", body)
				req.ContentLength = length
				req.Header.Set("X-Request-Id", "body-1")
				w := httptest.NewRecorder()
				aborted := serveRecovering(h, w, req)

				if tc.status == 499 {
					if !aborted || w.Body.Len() != 0 {
						t.Fatalf("client gone: aborted=%v, wrote %d %q", aborted, w.Code, w.Body.String())
					}
				} else {
					wantProblem(t, result{status: w.Code, header: w.Header(), body: w.Body.Bytes()}, tc.status, tc.cause)
					if w.Header().Get("Connection") != "close" {
						t.Errorf("Connection %q, want close", w.Header().Get("Connection"))
					}
				}
				rec := lb.record(t, "body-1")
				if rec["failure.kind"] != tc.cause || rec["status"] != float64(tc.status) {
					t.Errorf("log record %v", rec)
				}
				if health.got != nil {
					t.Errorf("passive health heard %v", health.got)
				}
				up.waitClosed(t, 1)
				if n := up.connections(); n != 1 {
					t.Errorf("%d upstream connections, want 1 (no retry)", n)
				}
				reqs := up.requests()
				if len(reqs) != 1 || reqs[0].Complete || len(reqs[0].Body) == 0 {
					t.Errorf("upstream received %d requests, first complete=%v (%d body bytes); want one, cut off mid-body",
						len(reqs), len(reqs) > 0 && reqs[0].Complete, len(reqs[0].Body))
				}
				if n := tg.IdleConns(); n != 0 {
					t.Errorf("%d pooled connections after a cut-off request", n)
				}
			})
		}
	}
}

// TestClientBodyErrorWhileBuffering: a replayable request's body is read
// before an upstream is asked (to replay it on a retry); when it fails,
// the client gets its cause and no upstream is contacted.
func TestClientBodyErrorWhileBuffering(t *testing.T) {
	up := startRecording(t)
	tr, err := upstream.New(upstream.Options{Name: "u", ConnectTimeout: time.Second, ResponseHeaderTimeout: time.Second,
		HeadLimits: upstream.Limits{Bytes: 64 << 10, Fields: 100}}, []string{up.url()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	rt := &proxy.Route{
		Name: "r", Upstream: tr, Picker: onlyTarget{tr.Targets()[0]},
		Retry: proxy.Retry{Attempts: 2, BodyBuffer: 64 << 10, Budget: retry.NewBudget(1, 100, nil)},
	}
	h := proxy.New(&proxy.Table{Router: router.New([]router.Rule{{}}), Routes: []*proxy.Route{rt}}, proxy.Options{})
	for _, tc := range []struct {
		err    error
		status int
		cause  string
	}{
		{failure.New(failure.RequestTimeout, ""), 408, "request_timeout"},
		{errors.New("malformed chunked encoding"), 400, "client_body_invalid"},
	} {
		req := httptest.NewRequest("PUT", "http://example.test/doc", &failingBody{data: "abc", err: tc.err})
		req.ContentLength = -1
		w := httptest.NewRecorder()
		serveRecovering(h, w, req)
		wantProblem(t, result{status: w.Code, header: w.Header(), body: w.Body.Bytes()}, tc.status, tc.cause)
	}
	if n := up.connections(); n != 0 {
		t.Fatalf("upstream contacted %d times", n)
	}
}

// TestMaxBodyHandler: a route's MaxBody cuts a body of unknown length off
// at one byte past it; a body of exactly MaxBody passes whole.
func TestMaxBodyHandler(t *testing.T) {
	up := startRecording(t)
	tr, err := upstream.New(upstream.Options{Name: "u", ConnectTimeout: time.Second, ResponseHeaderTimeout: 5 * time.Second,
		IdleTimeout: 5 * time.Second, HeadLimits: upstream.Limits{Bytes: 64 << 10, Fields: 100}}, []string{up.url()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	rt := &proxy.Route{Name: "r", Upstream: tr, Picker: onlyTarget{tr.Targets()[0]}, MaxBody: 50000,
		Retry: proxy.Retry{Attempts: 1}}
	h := proxy.New(&proxy.Table{Router: router.New([]router.Rule{{}}), Routes: []*proxy.Route{rt}}, proxy.Options{})
	for _, tc := range []struct {
		size   int
		status int
	}{{50000, 200}, {50001, 413}} {
		req := httptest.NewRequest("POST", "http://example.test/up", io.NopCloser(strings.NewReader(strings.Repeat("a", tc.size))))
		req.ContentLength = -1
		w := httptest.NewRecorder()
		serveRecovering(h, w, req)
		if w.Code != tc.status {
			t.Fatalf("%d bytes: status %d, want %d: %s", tc.size, w.Code, tc.status, w.Body.String())
		}
	}
	reqs := up.wait(t, 2)
	if !reqs[0].Complete || len(reqs[0].Body) != 50000 {
		t.Errorf("first: complete=%v, %d bytes", reqs[0].Complete, len(reqs[0].Body))
	}
	if reqs[1].Complete || len(reqs[1].Body) > 50000 {
		t.Errorf("second: complete=%v, %d bytes", reqs[1].Complete, len(reqs[1].Body))
	}
}

// TestClientBodyErrorUpstreamAnsweredEarly: an upstream that answered
// before taking the whole body does not turn the client's failure into
// its response: the client's cause is the outcome, and the cut-off
// request's connection is closed.
func TestClientBodyErrorUpstreamAnsweredEarly(t *testing.T) {
	up := startRecording(t)
	up.early = true
	tr, err := upstream.New(upstream.Options{Name: "u", ConnectTimeout: time.Second, ResponseHeaderTimeout: 5 * time.Second,
		IdleTimeout: 5 * time.Second, HeadLimits: upstream.Limits{Bytes: 64 << 10, Fields: 100}}, []string{up.url()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	rt := &proxy.Route{Name: "r", Upstream: tr, Picker: onlyTarget{tr.Targets()[0]}, Retry: proxy.Retry{Attempts: 1}}
	h := proxy.New(&proxy.Table{Router: router.New([]router.Rule{{}}), Routes: []*proxy.Route{rt}}, proxy.Options{})
	// The upstream answers on seeing the head, which reaches it while
	// the first of the 40 KiB are written; the body fails after them.
	req := httptest.NewRequest("POST", "http://example.test/up", &failingBody{data: strings.Repeat("a", 40<<10), err: failure.New(failure.RequestTimeout, "")})
	req.ContentLength = -1
	w := httptest.NewRecorder()
	serveRecovering(h, w, req)
	wantProblem(t, result{status: w.Code, header: w.Header(), body: w.Body.Bytes()}, 408, "request_timeout")
	up.waitClosed(t, 1)
}

// serveRecovering serves req and reports whether the handler aborted the
// response (panic http.ErrAbortHandler, as net/http expects).
func serveRecovering(h http.Handler, w http.ResponseWriter, req *http.Request) (aborted bool) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				panic(v)
			}
			aborted = true
		}
	}()
	h.ServeHTTP(w, req)
	return false
}
