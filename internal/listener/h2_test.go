package listener_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"candor/internal/config"
	"candor/internal/failure"
	"candor/internal/listener"
)

// serverSettings are the defaults of the server section.
func serverSettings() config.Server { return tlsConfig("/", "1.2", true).Server }

// h2Conn is an HTTP/2 client connection over c.
func h2Conn(t *testing.T, c net.Conn) *http2.ClientConn {
	t.Helper()
	cc, err := (&http2.Transport{AllowHTTP: true}).NewClientConn(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// startH2C serves cleartext HTTP/2 (prior knowledge) with h on a new
// listener.
func startH2C(t *testing.T, h http.Handler, sv config.Server) (*listener.H2, string) {
	t.Helper()
	s := listener.NewH2(h, sv, quietLog)
	addr := acceptLoop(t, s.ServeConn)
	t.Cleanup(func() { s.Close() })
	return s, addr
}

// h2cClient is a client speaking HTTP/2 with prior knowledge over plain
// TCP to addr, whatever the URL's host; dials counts its connections.
func h2cClient(t *testing.T, addr string, dials *atomic.Int32) *http.Client {
	t.Helper()
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, _ string, _ *tls.Config) (net.Conn, error) {
		if dials != nil {
			dials.Add(1)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// do sends req with c and returns the status, the Content-Type and the
// body.
func do(t *testing.T, c *http.Client, req *http.Request) (int, string, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
}

func newRequest(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestH2CPriorKnowledge(t *testing.T) {
	_, addr := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto+" tls="+strconv.FormatBool(r.TLS != nil)+" "+r.Host+r.URL.Path)
	}), serverSettings())
	var dials atomic.Int32
	c := h2cClient(t, addr, &dials)
	for i := range 3 {
		status, _, body := do(t, c, newRequest(t, "GET", "http://example.test/p"+strconv.Itoa(i), nil))
		if want := "HTTP/2.0 tls=false example.test/p" + strconv.Itoa(i); status != 200 || body != want {
			t.Fatalf("got %d %q, want 200 %q", status, body, want)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d connections for 3 requests, want 1", n)
	}
}

func TestH2CPrefaceAlreadyRead(t *testing.T) {
	s := listener.NewH2(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), serverSettings(), quietLog)
	t.Cleanup(func() { s.Close() })
	// A server that sniffed the preface itself hands the connection over
	// without it.
	addr := acceptLoop(t, func(c net.Conn) {
		buf := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != http2.ClientPreface {
			c.Close()
			return
		}
		s.ServeConnPreface(c)
	})
	status, _, body := do(t, h2cClient(t, addr, nil), newRequest(t, "GET", "http://x.test/", nil))
	if status != 200 || body != "ok" {
		t.Fatalf("got %d %q", status, body)
	}
}

// rawH2 is a hand-driven HTTP/2 client connection, to see the frames the
// server sends.
type rawH2 struct {
	t   *testing.T
	c   net.Conn
	fr  *http2.Framer
	hb  bytes.Buffer
	enc *hpack.Encoder
}

// dialRawH2 connects to addr and sends the preface and SETTINGS.
func dialRawH2(t *testing.T, addr string) *rawH2 {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &rawH2{t: t, c: c, fr: http2.NewFramer(c, c)}
	r.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	r.enc = hpack.NewEncoder(&r.hb)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := r.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return r
}

// request opens stream id with GET path (ending the stream when end).
func (r *rawH2) request(id uint32, path string, end bool) {
	r.t.Helper()
	r.hb.Reset()
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"}, {Name: ":authority", Value: "x.test"}, {Name: ":path", Value: path}} {
		r.enc.WriteField(f)
	}
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.hb.Bytes(), EndStream: end, EndHeaders: true}); err != nil {
		r.t.Fatal(err)
	}
}

// next reads the next frame (acknowledging the server's SETTINGS); io.EOF
// when the server closed the connection. It fails the test when nothing
// comes within 10s.
func (r *rawH2) next() (http2.Frame, error) {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := r.fr.ReadFrame()
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		return nil, io.EOF
	}
	if err != nil {
		r.t.Fatalf("reading a frame: %v", err)
	}
	if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
		r.fr.WriteSettingsAck()
	}
	return f, nil
}

// until reads frames (at most 100) until ok holds for one, and returns it.
func (r *rawH2) until(what string, ok func(http2.Frame) bool) http2.Frame {
	r.t.Helper()
	for range 100 {
		f, err := r.next()
		if err != nil {
			r.t.Fatalf("connection closed waiting for %s", what)
		}
		if ok(f) {
			return f
		}
	}
	r.t.Fatalf("no %s in 100 frames", what)
	return nil
}

// closed reads frames (at most 100) until the server closes the
// connection.
func (r *rawH2) closed() {
	r.t.Helper()
	for range 100 {
		if _, err := r.next(); err != nil {
			return
		}
	}
	r.t.Fatal("connection not closed after 100 frames")
}

func isGoAway(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }

func TestH2Settings(t *testing.T) {
	sv := serverSettings()
	_, addr := startH2C(t, http.NotFoundHandler(), sv)
	r := dialRawH2(t, addr)
	sf := r.until("SETTINGS", func(f http2.Frame) bool { _, ok := f.(*http2.SettingsFrame); return ok }).(*http2.SettingsFrame)
	if v, ok := sf.Value(http2.SettingMaxConcurrentStreams); !ok || v != listener.H2MaxConcurrentStreams {
		t.Errorf("MAX_CONCURRENT_STREAMS %d (%v), want %d", v, ok, listener.H2MaxConcurrentStreams)
	}
	// The header list limit matches HTTP/1.1's: request line plus header
	// section, plus HTTP/2's 32 octets for each of max_header_fields
	// fields and the 4 pseudo-header fields.
	want := uint32(int(sv.MaxRequestLine) + int(sv.MaxHeaderBytes) + 32*(sv.MaxHeaderFields+4))
	if v, ok := sf.Value(http2.SettingMaxHeaderListSize); !ok || v != want {
		t.Errorf("MAX_HEADER_LIST_SIZE %d (%v), want %d", v, ok, want)
	}
}

func TestH2ShutdownGraceful(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	s, addr := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "done")
	}), serverSettings())
	r := dialRawH2(t, addr)
	r.request(1, "/slow", true)
	<-started

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	ga := r.until("GOAWAY", isGoAway).(*http2.GoAwayFrame)
	if ga.ErrCode != http2.ErrCodeNo || ga.LastStreamID != 1 {
		t.Errorf("GOAWAY %v last stream %d, want NO_ERROR, 1", ga.ErrCode, ga.LastStreamID)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	default:
	}
	// The request in flight completes.
	close(release)
	var body []byte
	r.until("the end of stream 1", func(f http2.Frame) bool {
		if d, ok := f.(*http2.DataFrame); ok && d.StreamID == 1 {
			body = append(body, d.Data()...)
			return d.StreamEnded()
		}
		return false
	})
	if string(body) != "done" {
		t.Errorf("body %q, want done", body)
	}
	r.closed()
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if n := s.Conns(); n != 0 {
		t.Errorf("%d connections after Shutdown", n)
	}
}

func TestH2ShutdownDeadlineCloses(t *testing.T) {
	started := make(chan struct{})
	s, addr := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done() // until the connection is closed
	}), serverSettings())
	r := dialRawH2(t, addr)
	r.request(1, "/stuck", true)
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown: %v, want the context's error", err)
	}
	r.closed()
}

func TestH2ConnAfterShutdownGetsGoAway(t *testing.T) {
	s, addr := startH2C(t, http.NotFoundHandler(), serverSettings())
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A connection the accept loop had already taken is still told to go.
	r := dialRawH2(t, addr)
	r.until("GOAWAY", isGoAway)
}

func TestH2AbortResetsStream(t *testing.T) {
	_, addr := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}), serverSettings())
	resp, err := h2cClient(t, addr, nil).Get("http://x.test/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	se, ok := errors.AsType[http2.StreamError](err)
	if !ok || se.Code != http2.ErrCodeInternal {
		t.Fatalf("body %q, error %v; want the stream reset with INTERNAL_ERROR", body, err)
	}
	if string(body) != "partial" {
		t.Errorf("body before the reset %q", body)
	}
}

func TestH2MaxHeaderFields(t *testing.T) {
	sv := serverSettings()
	sv.MaxHeaderFields = 10
	_, addr := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), sv)
	c := h2cClient(t, addr, nil)
	if status, _, body := do(t, c, newRequest(t, "GET", "http://x.test/", nil)); status != 200 || body != "ok" {
		t.Fatalf("few fields: %d %q", status, body)
	}
	req := newRequest(t, "GET", "http://x.test/", nil)
	for i := range 20 {
		req.Header.Add("X-Field-"+strconv.Itoa(i), "v")
	}
	status, ctype, body := do(t, c, req)
	if status != 431 || ctype != "application/problem+json" || !strings.Contains(body, `"request_header_too_large"`) {
		t.Fatalf("20 fields: %d %s %q", status, ctype, body)
	}
}

// bodyHandler reads the request body and answers 200 with it, or 408 with
// the cause when the read timed out.
var bodyHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(r.Body)
	if errors.Is(err, failure.RequestTimeout) {
		w.WriteHeader(http.StatusRequestTimeout)
		io.WriteString(w, failure.KindOf(err).String())
		return
	}
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, err.Error())
		return
	}
	w.Write(data)
})

func TestH2BodyTimeout(t *testing.T) {
	sv := serverSettings()
	sv.BodyTimeout = config.Duration(50 * time.Millisecond)
	_, addr := startH2C(t, bodyHandler, sv)
	c := h2cClient(t, addr, nil)

	// A client that stops sending its body.
	pr, pw := io.Pipe()
	defer pw.Close()
	status, _, body := do(t, c, newRequest(t, "POST", "http://x.test/", pr))
	if status != 408 || body != "request_timeout" {
		t.Errorf("stalled body: %d %q", status, body)
	}
	// A body that comes is read.
	status, _, body = do(t, c, newRequest(t, "POST", "http://x.test/", strings.NewReader("payload")))
	if status != 200 || body != "payload" {
		t.Errorf("body: %d %q", status, body)
	}
}

func TestH2UpdateAppliesToNewConnections(t *testing.T) {
	s, addr := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), serverSettings())
	many := func() *http.Request {
		req := newRequest(t, "GET", "http://x.test/", nil)
		for i := range 20 {
			req.Header.Add("X-Field-"+strconv.Itoa(i), "v")
		}
		return req
	}
	var dials atomic.Int32
	old := h2cClient(t, addr, &dials)
	if status, _, _ := do(t, old, many()); status != 200 {
		t.Fatalf("before Update: %d", status)
	}
	sv := serverSettings()
	sv.MaxHeaderFields = 10
	s.Update(sv)
	// The connection opened before keeps its settings...
	if status, _, _ := do(t, old, many()); status != 200 {
		t.Errorf("old connection after Update: %d", status)
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
	// ...a new one gets the new ones.
	if status, _, _ := do(t, h2cClient(t, addr, nil), many()); status != 431 {
		t.Errorf("new connection after Update: %d, want 431", status)
	}
}

func TestH2IdleTimeout(t *testing.T) {
	sv := serverSettings()
	sv.IdleTimeout = config.Duration(50 * time.Millisecond)
	_, addr := startH2C(t, http.NotFoundHandler(), sv)
	r := dialRawH2(t, addr)
	// An idle connection is told to go, then closed.
	ga := r.until("GOAWAY", isGoAway).(*http2.GoAwayFrame)
	if ga.ErrCode != http2.ErrCodeNo {
		t.Errorf("GOAWAY %v, want NO_ERROR", ga.ErrCode)
	}
	r.closed()
}

func TestH2OverTLSServesRequestTLS(t *testing.T) {
	ca, dir := tlsCA(t), t.TempDir()
	cert := leafFor(t, ca, dir, "a", "a.test")
	_, addr := startTLS(t, loadTLS(t, tlsConfig(dir, "1.2", true, cert)), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto+" "+r.TLS.ServerName+" "+r.TLS.NegotiatedProtocol)
	}))
	c, err := handshake(t, addr, &tls.Config{ServerName: "a.test", RootCAs: ca.Pool(), NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := requestOver(t, c); got != "HTTP/2.0 a.test h2" {
		t.Errorf("got %q", got)
	}
}

// dialRawH2Window is dialRawH2 with the client's initial stream window set
// to window: 0 is a client that takes no response data.
func dialRawH2Window(t *testing.T, addr string, window uint32) *rawH2 {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &rawH2{t: t, c: c, fr: http2.NewFramer(c, c)}
	r.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	r.enc = hpack.NewEncoder(&r.hb)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := r.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: window}); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestH2WriteTimeoutStalledWindow(t *testing.T) {
	sv := serverSettings()
	sv.WriteTimeout = config.Duration(50 * time.Millisecond)
	handlerDone := make(chan error, 1)
	_, addr := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := w.Write(bytes.Repeat([]byte("x"), 64<<10))
		handlerDone <- err
	}), sv)
	// A client that never opens its window: the response cannot be sent.
	r := dialRawH2Window(t, addr, 0)
	r.request(1, "/", true)
	rst := r.until("RST_STREAM", func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok }).(*http2.RSTStreamFrame)
	if rst.StreamID != 1 {
		t.Errorf("RST_STREAM on stream %d", rst.StreamID)
	}
	select {
	case err := <-handlerDone:
		if err == nil {
			t.Error("the handler's write succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler is still blocked")
	}
}

func TestH2WriteTimeoutSmallBodyStalled(t *testing.T) {
	sv := serverSettings()
	sv.WriteTimeout = config.Duration(50 * time.Millisecond)
	// A small body sits in x/net's buffer until the handler returns: it is
	// timed too.
	_, addr := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "small") }), sv)
	r := dialRawH2Window(t, addr, 0)
	r.request(1, "/", true)
	r.until("RST_STREAM", func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok })
}

func TestH2WriteTimeoutOnlyWhileWriting(t *testing.T) {
	sv := serverSettings()
	sv.WriteTimeout = config.Duration(50 * time.Millisecond)
	_, addr := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "a")
		w.(http.Flusher).Flush()
		// Busy elsewhere (a slow upstream) for longer than write_timeout:
		// not the client's fault.
		time.Sleep(200 * time.Millisecond)
		io.WriteString(w, "b")
	}), sv)
	status, _, body := do(t, h2cClient(t, addr, nil), newRequest(t, "GET", "http://x.test/", nil))
	if status != 200 || body != "ab" {
		t.Fatalf("got %d %q", status, body)
	}
}

func TestH2Trailers(t *testing.T) {
	_, addr := startH2C(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "Grpc-Status")
		io.WriteString(w, "body")
		w.(http.Flusher).Flush()
		w.Header().Set("Grpc-Status", "0")
		w.Header().Set(http.TrailerPrefix+"Grpc-Message", "ok")
	}), serverSettings())
	resp, err := h2cClient(t, addr, nil).Get("http://x.test/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "body" {
		t.Fatalf("body %q, %v", body, err)
	}
	if got := resp.Trailer.Get("Grpc-Status"); got != "0" {
		t.Errorf("Grpc-Status trailer %q", got)
	}
	if got := resp.Trailer.Get("Grpc-Message"); got != "ok" {
		t.Errorf("Grpc-Message trailer %q", got)
	}
}
