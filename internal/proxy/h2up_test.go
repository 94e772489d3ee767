package proxy_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"candor/internal/fault"
	"candor/internal/reload"
)

// The tests of upstreams with protocol h2: a real gRPC server (the health
// service of google.golang.org/grpc) behind candor, and h2 upstreams that
// refuse, stall, reset and break, with clients speaking HTTP/2 to candor
// with prior knowledge (h2c) and HTTP/1.1.

// serveH2C serves h over cleartext HTTP/2 with prior knowledge on a new
// loopback listener, with x/net/http2's server, and returns its address.
// It stands for the gateway's own h2c listener, so that these tests need
// only the gateway's handler.
func serveH2C(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http2.Server{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				srv.ServeConn(c, &http2.ServeConnOpts{Handler: h})
				c.Close()
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// h2cClient is an HTTP client speaking HTTP/2 with prior knowledge.
func h2cClient() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: p, DisableCompression: true}}
}

// grpcClient dials addr with gRPC over h2c.
func grpcClient(t *testing.T, addr string) healthpb.HealthClient {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return healthpb.NewHealthClient(cc)
}

// startGRPC runs a gRPC server with the health service (service "svc"
// SERVING), over TLS when creds is not nil.
func startGRPC(t *testing.T, creds credentials.TransportCredentials) (string, *health.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	gs := grpc.NewServer(opts...)
	hs := health.NewServer()
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		gs.Serve(ln)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-done
	})
	return ln.Addr().String(), hs
}

// h2Gateway is candor with one route to an h2 upstream at url, served to
// HTTP/1.1 clients on its listener and to HTTP/2 clients on h2c.
func h2Gateway(t *testing.T, upstreamYAML string) (*gateway, string) {
	t.Helper()
	g := startGateway(t, `listen: 127.0.0.1:0
log: {level: debug, access: true}
routes:
  - name: grpc
    upstream: u
upstreams:
  u:
    protocol: h2
`+upstreamYAML)
	return g, serveH2C(t, g.st.Handler)
}

func h2Targets(urls ...string) string {
	var b strings.Builder
	b.WriteString("    targets: [")
	for i, u := range urls {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(`{url: "` + u + `"}`)
	}
	b.WriteString("]\n    timeouts: {connect: 1s, response_header: 1s, idle: 2s}\n")
	return b.String()
}

// TestGRPCThroughH2C sends unary gRPC calls through candor over h2c: a
// call that succeeds, and one whose grpc-status (NotFound, in the
// trailers) reaches the client as the service's answer, not as a gateway
// error.
func TestGRPCThroughH2C(t *testing.T) {
	up, _ := startGRPC(t, nil)
	g, addr := h2Gateway(t, h2Targets("http://"+up))
	c := grpcClient(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	resp, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
	if err != nil {
		t.Fatalf("Check through candor: %v", err)
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("status %v", resp.Status)
	}

	_, err = c.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"})
	if st, _ := status.FromError(err); st.Code() != codes.NotFound || st.Message() != "unknown service" {
		t.Fatalf("unknown service: %v, want NotFound from the service", err)
	}

	// Both were the upstream's answers: logged as successes.
	for _, r := range h2RequestRecords(t, g.log, 2) {
		if r["status"] != float64(200) || r["failure.kind"] != nil {
			t.Fatalf("log record %v", r)
		}
	}
}

// h2RequestRecords waits (bounded) for n request records and returns them.
// A record is written when the handler returns, which may be just after
// the client saw the response.
func h2RequestRecords(t *testing.T, l *logBuffer, n int) []map[string]any {
	t.Helper()
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	for {
		var recs []map[string]any
		for _, r := range l.records(t) {
			if r["request_id"] != nil {
				recs = append(recs, r)
			}
		}
		if len(recs) >= n {
			return recs
		}
		select {
		case <-l.written():
		case <-timeout.C:
			t.Fatalf("%d request records, want %d:\n%v", len(recs), n, recs)
		}
	}
}

// TestGRPCServerStreamThroughH2C checks a server-streaming call (health
// Watch): each message reaches the client as the service sends it, not
// when the stream ends.
func TestGRPCServerStreamThroughH2C(t *testing.T) {
	up, hs := startGRPC(t, nil)
	_, addr := h2Gateway(t, h2Targets("http://"+up))
	c := grpcClient(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := c.Watch(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := w.Recv()
	if err != nil || first.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first message %v, %v", first, err)
	}
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_NOT_SERVING)
	second, err := w.Recv()
	if err != nil || second.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("second message %v, %v", second, err)
	}
}

// grpcFrame is a gRPC length-prefixed message (uncompressed).
func grpcFrame(msg []byte) []byte {
	b := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:5], uint32(len(msg)))
	copy(b[5:], msg)
	return b
}

// TestGRPCTrailersOverHTTP1 sends a hand-built gRPC request through
// candor's HTTP/1.1 listener: the upstream's grpc-status arrives as a
// trailer of the chunked response.
func TestGRPCTrailersOverHTTP1(t *testing.T) {
	up, _ := startGRPC(t, nil)
	g, _ := h2Gateway(t, h2Targets("http://"+up))
	// HealthCheckRequest{service: "nope"}: field 1, length-delimited.
	msg := append([]byte{0x0a, 4}, "nope"...)
	req, err := http.NewRequest("POST", g.base+"/grpc.health.v1.Health/Check", bytes.NewReader(grpcFrame(msg)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/grpc" {
		t.Fatalf("status %d, header %v, body %q", resp.StatusCode, resp.Header, body)
	}
	// NotFound is 5: in the trailers, or in the head of a trailers-only
	// response (grpc-go sends an error with no message that way).
	got := resp.Trailer.Get("Grpc-Status")
	if got == "" {
		got = resp.Header.Get("Grpc-Status")
	}
	if got != "5" {
		t.Fatalf("grpc-status %q; header %v trailer %v", got, resp.Header, resp.Trailer)
	}
}

// TestH2TrailersAfterBody checks trailers that follow a body, with an
// x/net/http2 upstream, to HTTP/2 and HTTP/1.1 clients alike.
func TestH2TrailersAfterBody(t *testing.T) {
	up := serveH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		io.WriteString(w, "payload")
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
		w.Header().Set(http.TrailerPrefix+"Grpc-Message", "all good")
	}))
	g, addr := h2Gateway(t, h2Targets("http://"+up))
	for name, c := range map[string]struct {
		client *http.Client
		base   string
	}{
		"h2c":      {h2cClient(), "http://" + addr},
		"http/1.1": {client(), g.base},
	} {
		t.Run(name, func(t *testing.T) {
			resp, err := c.client.Get(c.base + "/x")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil || string(b) != "payload" {
				t.Fatalf("body %q, %v", b, err)
			}
			if resp.Trailer.Get("Grpc-Status") != "0" || resp.Trailer.Get("Grpc-Message") != "all good" {
				t.Fatalf("trailers %v (header %v)", resp.Trailer, resp.Header)
			}
		})
	}
}

// h2Get does a GET over h2c and returns what the client saw.
func h2Get(t *testing.T, url string) result {
	t.Helper()
	resp, err := h2cClient().Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, berr := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: b, bodyErr: berr}
}

// rawH2 is an h2c upstream that speaks HTTP/2 frame by frame: after the
// preface and SETTINGS it calls onRequest for every request's HEADERS, and
// otherwise only reads.
func rawH2(t *testing.T, onRequest func(fr *http2.Framer, stream uint32, c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				preface := make([]byte, len(http2.ClientPreface))
				if _, err := io.ReadFull(c, preface); err != nil {
					return
				}
				fr := http2.NewFramer(c, c)
				fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
				fr.WriteSettings()
				for {
					f, err := fr.ReadFrame()
					if err != nil {
						return
					}
					switch f := f.(type) {
					case *http2.SettingsFrame:
						if !f.IsAck() {
							fr.WriteSettingsAck()
						}
					case *http2.MetaHeadersFrame:
						onRequest(fr, f.StreamID, c)
					}
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// TestH2UpstreamFailures: an h2 upstream's failures get the causes of the
// status map, to HTTP/2 clients.
func TestH2UpstreamFailures(t *testing.T) {
	silent := rawH2(t, func(*http2.Framer, uint32, net.Conn) {})
	reset := rawH2(t, func(fr *http2.Framer, id uint32, _ net.Conn) { fr.WriteRSTStream(id, http2.ErrCodeInternal) })
	http1 := faultServer(t) // an HTTP/1.1 server
	g := startGateway(t, `listen: 127.0.0.1:0
log: {level: debug, access: true}
routes:
  - {name: refused, match: {host: refused.test}, upstream: refused}
  - {name: silent, match: {host: silent.test}, upstream: silent}
  - {name: reset, match: {host: reset.test}, upstream: reset}
  - {name: http1, match: {host: http1.test}, upstream: http1}
upstreams:
  refused:
    protocol: h2
`+h2Targets(refusedAddr(t))+`
  silent:
    protocol: h2
`+h2Targets("http://"+silent)+`
  reset:
    protocol: h2
`+h2Targets("http://"+reset)+`
  http1:
    protocol: h2
`+h2Targets("http://"+http1.Addr()))
	addr := serveH2C(t, g.st.Handler)
	cases := []struct {
		host, cause, phase string
		status             int
	}{
		{"refused.test", "upstream_connect_refused", "connect", 502},
		{"silent.test", "upstream_response_timeout", "read_head", 504},
		{"reset.test", "upstream_reset_before_response", "read_head", 502},
		{"http1.test", "upstream_protocol_mismatch", "read_head", 502},
	}
	for _, c := range cases {
		t.Run(c.host, func(t *testing.T) {
			req, err := http.NewRequest("GET", "http://"+addr+"/x", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = c.host
			resp, err := h2cClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			res := result{status: resp.StatusCode, header: resp.Header, body: b}
			rec := g.log.record(t, res.header.Get("X-Request-Id"))
			if rec["failure.kind"] != c.cause {
				t.Logf("log record %v", rec) // the underlying error, for the failure below
			}
			wantProblem(t, res, c.status, c.cause)
			if rec["failure.phase"] != c.phase {
				t.Fatalf("log record %v", rec)
			}
		})
	}
}

// refusedAddr returns an http URL of a loopback port where nothing
// listens.
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// TestH2RetryAfterRefused: a target that refuses is retried on the other
// (nothing was sent), for a non-idempotent gRPC call too.
func TestH2RetryAfterRefused(t *testing.T) {
	up, _ := startGRPC(t, nil)
	g, addr := h2Gateway(t, h2Targets(refusedAddr(t), "http://"+up))
	c := grpcClient(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 4 {
		if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: "svc"}); err != nil {
			t.Fatalf("Check: %v", err)
		}
	}
	retried := false
	for _, r := range h2RequestRecords(t, g.log, 4) {
		if r["attempt"] == float64(2) {
			retried = true
		}
	}
	if !retried {
		t.Fatalf("no request was retried:\n%v", g.log.records(t))
	}
}

// TestH2BodyBrokenMidStream: an h2 upstream that resets its stream after
// the head has been passed on makes candor reset the client's stream: the
// client sees a broken response, never a complete one.
func TestH2BodyBrokenMidStream(t *testing.T) {
	up := serveH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		io.WriteString(w, "part of it")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}))
	g, addr := h2Gateway(t, h2Targets("http://"+up))
	res := h2Get(t, "http://"+addr+"/x")
	if res.status != 200 || res.bodyErr == nil {
		t.Fatalf("status %d, body error %v: the client saw a complete response", res.status, res.bodyErr)
	}
	rec := g.log.record(t, res.header.Get("X-Request-Id"))
	if rec["failure.kind"] != "upstream_truncated_body" || rec["aborted"] != true {
		t.Fatalf("log record %v", rec)
	}
}

// TestGRPCOverTLSUpstream: an https target with protocol h2 is reached
// with TLS and ALPN h2, its certificate checked against the configured CA
// and server name.
func TestGRPCOverTLSUpstream(t *testing.T) {
	ca, err := fault.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Leaf("grpc.candor.test")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	up, _ := startGRPC(t, credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS12}))
	g, addr := h2Gateway(t, h2Targets("https://"+up)+
		"    tls: {ca_file: "+caFile+", server_name: grpc.candor.test}\n")
	c := grpcClient(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check over TLS: %v, %v", resp, err)
	}
	// The call dialed: its record times the TLS handshake.
	recs := h2RequestRecords(t, g.log, 1)
	if v, _ := recs[0]["tls_ms"].(float64); v <= 0 || recs[0]["status"] != float64(200) {
		t.Fatalf("log record %v", recs[0])
	}
}

// TestH2EarlyResponseWhileUploading: an h2 upstream that answers while the
// client is still sending its body (an early answer, or the end of a
// bidirectional stream) gets its response to the client complete, without
// waiting for the rest of the upload.
func TestH2EarlyResponseWhileUploading(t *testing.T) {
	up := serveH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 5)
		io.ReadFull(r.Body, buf) // the first piece, then answer
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "got "+string(buf))
	}))
	_, addr := h2Gateway(t, h2Targets("http://"+up))
	pr, pw := io.Pipe()
	defer pw.Close()
	req, err := http.NewRequest("POST", "http://"+addr+"/upload", pr)
	if err != nil {
		t.Fatal(err)
	}
	go pw.Write([]byte("hello, and more to come"))
	resp, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || string(b) != "got hello" {
		t.Fatalf("status %d body %q err %v", resp.StatusCode, b, err)
	}
}

// TestH2ReloadKeepsConnections: a reload that changes an h2 upstream but
// not its target keeps the target's HTTP/2 connection; a reload that
// changes its protocol rebuilds the target.
func TestH2ReloadKeepsConnections(t *testing.T) {
	var mu sync.Mutex
	protos := map[string]int{}
	up := serveH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		protos[r.Proto]++
		mu.Unlock()
	}))
	file := filepath.Join(t.TempDir(), "candor.yaml")
	conf := func(protocol, idle string) []byte {
		return []byte(`listen: 127.0.0.1:0
routes:
  - {name: r, upstream: u}
upstreams:
  u:
    protocol: ` + protocol + `
    targets: [{url: "http://` + up + `"}]
    timeouts: {connect: 1s, response_header: 2s, idle: ` + idle + `}
`)
	}
	if err := os.WriteFile(file, conf("h2", "2s"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, data, err := reload.LoadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	st, err := reload.StartFile(cfg, data, newTestLogger(&logBuffer{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st.Shutdown(ctx)
	})
	get := func() {
		t.Helper()
		res := do(t, "GET", "http://"+st.GatewayAddr()+"/", nil, nil)
		if res.status != 200 {
			t.Fatalf("status %d %s", res.status, res.body)
		}
	}
	get()
	tg := st.Generation().Upstreams["u"].Transport.Targets()[0]
	opened := func() uint64 { o, _, _ := tg.ConnStats(); return o }

	if err := os.WriteFile(file, conf("h2", "3s"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := st.Reload(); err != nil {
		t.Fatal(err)
	}
	if st.Generation().Upstreams["u"].Transport.Targets()[0] != tg {
		t.Fatal("the unchanged h2 target was rebuilt")
	}
	get()
	if opened() != 1 {
		t.Fatalf("%d connections opened, want the first one kept", opened())
	}

	if err := os.WriteFile(file, conf("http1", "3s"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := st.Reload(); err != nil {
		t.Fatal(err)
	}
	if st.Generation().Upstreams["u"].Transport.Targets()[0] == tg {
		t.Fatal("a change of protocol kept the h2 target")
	}
	// An HTTP/1.1 request to the h2c-only server: a protocol mismatch.
	res := do(t, "GET", "http://"+st.GatewayAddr()+"/", nil, nil)
	if res.status != 502 {
		t.Fatalf("http1 to an h2c-only server: %d %s", res.status, res.body)
	}
	mu.Lock()
	defer mu.Unlock()
	if protos["HTTP/2.0"] != 2 || len(protos) != 1 {
		t.Fatalf("the upstream saw %v", protos)
	}
}

// TestGRPCThroughGatewayListener runs the unary calls through the
// gateway's own listener with server.h2c: prior-knowledge HTTP/2 from the
// gRPC client to candor, HTTP/2 from candor to the gRPC server.
func TestGRPCThroughGatewayListener(t *testing.T) {
	up, _ := startGRPC(t, nil)
	g := startGateway(t, `listen: 127.0.0.1:0
server: {h2c: true}
routes:
  - {name: grpc, upstream: u}
upstreams:
  u:
    protocol: h2
`+h2Targets("http://"+up))
	c := grpcClient(t, g.st.GatewayAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check: %v, %v", resp, err)
	}
	_, err = c.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"})
	if st, _ := status.FromError(err); st.Code() != codes.NotFound {
		t.Fatalf("unknown service: %v, want NotFound from the service", err)
	}
}
