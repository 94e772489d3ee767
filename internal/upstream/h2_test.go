package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"candor/internal/failure"
)

// h2Options are testOptions for an HTTP/2 upstream.
func h2Options() Options {
	opt := testOptions()
	opt.H2 = true
	return opt
}

// startH2 starts an HTTP/2 upstream serving h with x/net/http2's server:
// prior-knowledge h2c, or TLS with ALPN h2 when cfg is not nil.
func startH2(t *testing.T, cfg *tls.Config, h http.Handler) *server {
	t.Helper()
	if cfg != nil {
		cfg = cfg.Clone()
		cfg.NextProtos = []string{http2.NextProtoTLS}
	}
	srv := &http2.Server{}
	return startServerTLS(t, cfg, func(c *srvConn) {
		if tc, ok := c.nc.(*tls.Conn); ok {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := tc.HandshakeContext(ctx)
			cancel()
			if err != nil {
				return
			}
		}
		srv.ServeConn(c.nc, &http2.ServeConnOpts{Handler: h})
	})
}

// startH2Raw starts an h2c upstream that speaks HTTP/2 frame by frame: it
// reads the client preface, sends its SETTINGS, acknowledges the client's,
// and calls onRequest with the framer for every request's HEADERS frame.
// Frames are read (and discarded) until the connection ends; nothing is
// ever sent but what onRequest writes, and no WINDOW_UPDATE.
func startH2Raw(t *testing.T, onRequest func(fr *http2.Framer, stream uint32, c *srvConn)) *server {
	t.Helper()
	return startServer(t, func(c *srvConn) {
		preface := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(c.br, preface); err != nil || string(preface) != http2.ClientPreface {
			return
		}
		fr := http2.NewFramer(c.nc, c.br)
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		if fr.WriteSettings() != nil {
			return
		}
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() && fr.WriteSettingsAck() != nil {
					return
				}
			case *http2.MetaHeadersFrame:
				onRequest(fr, f.StreamID, c)
			}
		}
	})
}

// hpackBlock encodes fields (name, value pairs) as a header block.
func hpackBlock(fields ...string) []byte {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return buf.Bytes()
}

// h2Fetch does one round trip and reads the body; on success it returns the
// response too.
func h2Fetch(t *testing.T, tr *Transport, tg *Target, req *Request) (*Response, []byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return fetch(ctx, tr, tg, req)
}

// wantCause checks that err is a *failure.Error of kind k, attributed to
// the attempt.
func wantCause(t *testing.T, err error, k failure.Kind) *failure.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", k)
	}
	fe := asFailure(t, err)
	if fe.Kind != k {
		t.Fatalf("cause %v (%v), want %v", fe.Kind, fe, k)
	}
	if fe.Upstream != "test-upstream" || fe.Target == "" || fe.Attempt != 1 {
		t.Fatalf("failure not attributed: upstream %q target %q attempt %d", fe.Upstream, fe.Target, fe.Attempt)
	}
	return fe
}

// TestH2CRoundTrip sends requests over prior-knowledge h2c: the request
// arrives with candor's fields and without hop-by-hop ones, the response
// comes back with its status, fields, body and trailers, and the second
// request reuses the connection.
func TestH2CRoundTrip(t *testing.T) {
	type seen struct {
		proto, method, path, authority, te, body string
		header                                   http.Header
	}
	got := make(chan seen, 4)
	s := startH2(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Proto, r.Method, r.URL.RequestURI(), r.Host, r.Header.Get("Te"), string(b), r.Header.Clone()}
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("X-Up", "1")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush() // no Content-Length: the stream's end ends the body
		io.WriteString(w, "hello")
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
		w.Header().Set(http.TrailerPrefix+"Grpc-Message", "fine")
	}))
	tr, tg := newTestTransport(t, h2Options(), s.url)
	if !tr.H2() {
		t.Fatal("H2() is false")
	}

	body := "ping body"
	req := &Request{
		Method: "POST", Target: "/pkg.Svc/Call?x=1", Host: "api.test",
		Header: http.Header{
			"Te":         {"trailers"},
			"Connection": {"X-Hop"},
			"X-Hop":      {"secret"},
			"Keep-Alive": {"timeout=5"},
			"X-Client":   {"c"},
		},
		Extra:         []Field{{Name: "X-Request-Id", Value: "rid"}},
		Body:          strings.NewReader(body),
		ContentLength: int64(len(body)),
		Attempt:       1,
	}
	resp, b, err := h2Fetch(t, tr, tg, req)
	if err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.proto != "HTTP/2.0" || r.method != "POST" || r.path != "/pkg.Svc/Call?x=1" || r.authority != "api.test" || r.body != body {
		t.Fatalf("upstream saw %+v", r)
	}
	if r.te != "trailers" || r.header.Get("X-Request-Id") != "rid" || r.header.Get("X-Client") != "c" {
		t.Fatalf("forwarded fields: %v", r.header)
	}
	if r.header.Get("X-Hop") != "" || r.header.Get("Keep-Alive") != "" || r.header.Get("User-Agent") != "" {
		t.Fatalf("hop-by-hop or invented fields forwarded: %v", r.header)
	}
	if resp.Status != 200 || string(b) != "hello" || resp.Mode != BodyChunked || resp.Reused {
		t.Fatalf("status %d mode %v reused %v body %q", resp.Status, resp.Mode, resp.Reused, b)
	}
	if !hasField(resp.Fields, "X-Up", "1") || !hasField(resp.Fields, "Content-Type", "application/grpc") {
		t.Fatalf("fields %v", resp.Fields)
	}
	tra := resp.Body.Trailer()
	if !hasField(tra, "Grpc-Status", "0") || !hasField(tra, "Grpc-Message", "fine") || len(tra) != 2 {
		t.Fatalf("trailers %v", tra)
	}
	if sent, recv := resp.Body.Wire(); sent != int64(len(body)) || recv != 5 {
		t.Fatalf("wire counts %d/%d", sent, recv)
	}

	// Without TE: trailers, none is sent; the connection is reused.
	resp, _, err = h2Fetch(t, tr, tg, newRequest("GET"))
	if err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.te != "" || r.method != "GET" || r.path != "/" {
		t.Fatalf("second request: %+v", r)
	}
	if !resp.Reused {
		t.Fatal("second request not on the pooled connection")
	}
	if opened, reused, _ := tg.ConnStats(); opened != 1 || reused != 1 {
		t.Fatalf("ConnStats opened %d reused %d, want 1 and 1", opened, reused)
	}
}

func hasField(fs []Field, name, value string) bool {
	for _, f := range fs {
		if strings.EqualFold(f.Name, name) && f.Value == value {
			return true
		}
	}
	return false
}

// TestH2ResponseShapes covers the framings an HTTP/2 response can have:
// declared length, trailers-only (HEADERS ending the stream), HEAD, and
// an upstream error status passed through.
func TestH2ResponseShapes(t *testing.T) {
	s := startH2(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/length":
			w.Header().Set("Content-Length", "3")
			io.WriteString(w, "abc")
		case "/trailers-only":
			w.Header().Set("Grpc-Status", "5")
			w.WriteHeader(http.StatusOK)
		case "/teapot":
			w.WriteHeader(http.StatusTeapot)
			w.(http.Flusher).Flush()
			io.WriteString(w, "no")
		}
	}))
	tr, tg := newTestTransport(t, h2Options(), s.url)
	cases := []struct {
		method, path string
		status       int
		mode         BodyMode
		cl           int64
		body         string
	}{
		{"GET", "/length", 200, BodyLength, 3, "abc"},
		{"GET", "/trailers-only", 200, BodyNone, 0, ""},
		{"HEAD", "/length", 200, BodyNone, 3, ""},
		{"GET", "/teapot", 418, BodyChunked, -1, "no"},
	}
	for _, c := range cases {
		t.Run(c.method+c.path, func(t *testing.T) {
			req := newRequest(c.method)
			req.Target = c.path
			resp, b, err := h2Fetch(t, tr, tg, req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != c.status || resp.Mode != c.mode || resp.ContentLength != c.cl || string(b) != c.body {
				t.Fatalf("status %d mode %v length %d body %q", resp.Status, resp.Mode, resp.ContentLength, b)
			}
			for _, f := range resp.Fields {
				if strings.EqualFold(f.Name, "Content-Length") {
					t.Fatalf("framing field in Fields: %v", resp.Fields)
				}
			}
		})
	}
}

// TestH2TLS checks h2 over TLS: ALPN h2 with a CA and server name from the
// configuration, an untrusted certificate, and a TLS server that does not
// choose h2.
func TestH2TLS(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.leaf(t, "grpc.internal")
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	s := startH2(t, cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Proto", r.Proto)
		w.Header().Set("X-TLS", strconv.FormatBool(r.TLS != nil))
	}))

	t.Run("trusted", func(t *testing.T) {
		opt := h2Options()
		opt.TLS = &tls.Config{RootCAs: ca.pool, ServerName: "grpc.internal", MinVersion: tls.VersionTLS12}
		tr, tg := newTestTransport(t, opt, s.url)
		resp, _, err := h2Fetch(t, tr, tg, newRequest("GET"))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != 200 || !hasField(resp.Fields, "X-Proto", "HTTP/2.0") || !hasField(resp.Fields, "X-TLS", "true") {
			t.Fatalf("status %d fields %v", resp.Status, resp.Fields)
		}
		if resp.Timing.TLS == 0 || resp.Timing.Connect == 0 || resp.Timing.FirstByte == 0 {
			t.Fatalf("timing %+v", resp.Timing)
		}
	})
	t.Run("untrusted", func(t *testing.T) {
		opt := h2Options()
		opt.TLS = &tls.Config{ServerName: "grpc.internal", MinVersion: tls.VersionTLS12} // system roots
		tr, tg := newTestTransport(t, opt, s.url)
		_, _, err := h2Fetch(t, tr, tg, newRequest("GET"))
		wantCause(t, err, failure.TLSUntrusted)
	})
	t.Run("name mismatch", func(t *testing.T) {
		opt := h2Options()
		opt.TLS = &tls.Config{RootCAs: ca.pool, ServerName: "other.internal", MinVersion: tls.VersionTLS12}
		tr, tg := newTestTransport(t, opt, s.url)
		_, _, err := h2Fetch(t, tr, tg, newRequest("GET"))
		wantCause(t, err, failure.TLSNameMismatch)
	})
	t.Run("no h2 through ALPN", func(t *testing.T) {
		// A TLS server that offers no ALPN protocol at all: the handshake
		// succeeds without choosing h2.
		plain := startServerTLS(t, &tls.Config{Certificates: []tls.Certificate{cert}}, keepAlive)
		opt := h2Options()
		opt.TLS = &tls.Config{RootCAs: ca.pool, ServerName: "grpc.internal", MinVersion: tls.VersionTLS12}
		tr, tg := newTestTransport(t, opt, plain.url)
		_, _, err := h2Fetch(t, tr, tg, newRequest("GET"))
		fe := wantCause(t, err, failure.ProtocolMismatch)
		if fe.Phase != failure.PhaseTLS || plain.requests.Load() != 0 {
			t.Fatalf("phase %v, requests %d", fe.Phase, plain.requests.Load())
		}
	})
}

// TestH2Failures reproduces every failure of an h2 upstream before its
// response with real servers, and checks its cause.
func TestH2Failures(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		tr, tg := newTestTransport(t, h2Options(), refusedURL(t))
		_, _, err := h2Fetch(t, tr, tg, newRequest("GET"))
		fe := wantCause(t, err, failure.ConnectRefused)
		if fe.Phase != failure.PhaseConnect {
			t.Fatalf("phase %v", fe.Phase)
		}
	})
	t.Run("never answers", func(t *testing.T) {
		s := startH2Raw(t, func(*http2.Framer, uint32, *srvConn) {})
		opt := h2Options()
		opt.ResponseHeaderTimeout = 200 * time.Millisecond
		tr, tg := newTestTransport(t, opt, s.url)
		_, _, err := h2Fetch(t, tr, tg, newRequest("GET"))
		fe := wantCause(t, err, failure.ResponseTimeout)
		if fe.Phase != failure.PhaseReadHead || fe.Kind.Status() != 504 {
			t.Fatalf("phase %v status %d", fe.Phase, fe.Kind.Status())
		}
	})
	t.Run("per-try timeout", func(t *testing.T) {
		s := startH2Raw(t, func(*http2.Framer, uint32, *srvConn) {})
		tr, tg := newTestTransport(t, h2Options(), s.url) // response_header 5s
		req := newRequest("GET")
		req.HeaderTimeout = 100 * time.Millisecond
		_, _, err := h2Fetch(t, tr, tg, req)
		wantCause(t, err, failure.ResponseTimeout)
	})
	t.Run("reset", func(t *testing.T) {
		// RST_STREAM from the upstream: this pins the text of x/net's
		// "from peer" cause that package failure compares.
		s := startH2Raw(t, func(fr *http2.Framer, id uint32, _ *srvConn) {
			fr.WriteRSTStream(id, http2.ErrCodeInternal)
		})
		tr, tg := newTestTransport(t, h2Options(), s.url)
		_, _, err := h2Fetch(t, tr, tg, newRequest("GET"))
		wantCause(t, err, failure.ResetBeforeResponse)
		if se, ok := errors.AsType[http2.StreamError](err); !ok || se.Code != http2.ErrCodeInternal {
			t.Fatalf("error %v does not carry the stream error", err)
		}
	})
	t.Run("goaway with error", func(t *testing.T) {
		s := startH2Raw(t, func(fr *http2.Framer, id uint32, c *srvConn) {
			fr.WriteGoAway(id, http2.ErrCodeInternal, []byte("overloaded"))
			c.nc.Close()
		})
		tr, tg := newTestTransport(t, h2Options(), s.url)
		_, _, err := h2Fetch(t, tr, tg, newRequest("GET"))
		wantCause(t, err, failure.ResetBeforeResponse)
	})
	t.Run("graceful goaway then close", func(t *testing.T) {
		s := startH2Raw(t, func(fr *http2.Framer, id uint32, c *srvConn) {
			fr.WriteGoAway(id, http2.ErrCodeNo, nil)
			c.nc.Close()
		})
		tr, tg := newTestTransport(t, h2Options(), s.url)
		_, _, err := h2Fetch(t, tr, tg, newRequest("GET"))
		wantCause(t, err, failure.ClosedBeforeResponse)
	})
	t.Run("closed", func(t *testing.T) {
		// A FIN, then whatever the client still sends is read: a close
		// with unread bytes would be a RST.
		s := startH2Raw(t, func(_ *http2.Framer, _ uint32, c *srvConn) {
			c.raw.CloseWrite()
			c.hold()
		})
		tr, tg := newTestTransport(t, h2Options(), s.url)
		_, _, err := h2Fetch(t, tr, tg, newRequest("GET"))
		wantCause(t, err, failure.ClosedBeforeResponse)
	})
	t.Run("tcp reset", func(t *testing.T) {
		// The kernel reports a RST once, to whichever of x/net's reader
		// and writer goroutines touches the socket first; the reader
		// then sees an end of file. Both causes are 502s retried alike.
		s := startH2Raw(t, func(_ *http2.Framer, _ uint32, c *srvConn) { c.reset() })
		tr, tg := newTestTransport(t, h2Options(), s.url)
		_, _, err := h2Fetch(t, tr, tg, newRequest("GET"))
		if k := failure.KindOf(err); k != failure.ResetBeforeResponse && k != failure.ClosedBeforeResponse {
			t.Fatalf("cause %v (%v), want reset or closed before the response", k, err)
		}
	})
	t.Run("http1 only", func(t *testing.T) {
		// An HTTP/1.1 server answers the connection preface with a 400.
		s := startServer(t, func(c *srvConn) {
			c.br.ReadString('\n')
			c.write("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		})
		tr, tg := newTestTransport(t, h2Options(), s.url)
		_, _, err := h2Fetch(t, tr, tg, newRequest("GET"))
		wantCause(t, err, failure.ProtocolMismatch)
	})
	t.Run("no status", func(t *testing.T) {
		s := startH2Raw(t, func(fr *http2.Framer, id uint32, _ *srvConn) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hpackBlock("x-a", "b"), EndHeaders: true, EndStream: true})
		})
		tr, tg := newTestTransport(t, h2Options(), s.url)
		_, _, err := h2Fetch(t, tr, tg, newRequest("GET"))
		wantCause(t, err, failure.MalformedHeader)
	})
	t.Run("invalid field name", func(t *testing.T) {
		s := startH2Raw(t, func(fr *http2.Framer, id uint32, _ *srvConn) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hpackBlock(":status", "200", "X-Upper", "b"), EndHeaders: true, EndStream: true})
		})
		tr, tg := newTestTransport(t, h2Options(), s.url)
		_, _, err := h2Fetch(t, tr, tg, newRequest("GET"))
		wantCause(t, err, failure.MalformedHeader)
	})
	t.Run("head too large", func(t *testing.T) {
		s := startH2(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Big", strings.Repeat("b", 10<<10))
		}))
		tr, tg := newTestTransport(t, h2Options(), s.url) // limit 8KiB
		_, _, err := h2Fetch(t, tr, tg, newRequest("GET"))
		wantCause(t, err, failure.HeadTooLarge)
	})
	t.Run("too many fields", func(t *testing.T) {
		s := startH2(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for i := range 120 {
				w.Header().Set("X-F"+strconv.Itoa(i), "v")
			}
		}))
		tr, tg := newTestTransport(t, h2Options(), s.url) // 100 fields
		_, _, err := h2Fetch(t, tr, tg, newRequest("GET"))
		wantCause(t, err, failure.HeadTooLarge)
	})
	t.Run("upstream does not take the body", func(t *testing.T) {
		// No WINDOW_UPDATE ever: the request body stalls after the first
		// 64KiB window.
		s := startH2Raw(t, func(*http2.Framer, uint32, *srvConn) {})
		opt := h2Options()
		opt.IdleTimeout = 200 * time.Millisecond
		tr, tg := newTestTransport(t, opt, s.url)
		req := newRequest("PUT")
		req.Body = bytes.NewReader(make([]byte, 256<<10))
		req.ContentLength = 256 << 10
		_, _, err := h2Fetch(t, tr, tg, req)
		fe := wantCause(t, err, failure.ResponseTimeout)
		if fe.Phase != failure.PhaseWrite || fe.BytesSent == 0 {
			t.Fatalf("phase %v, %d bytes sent", fe.Phase, fe.BytesSent)
		}
	})
	t.Run("client body error", func(t *testing.T) {
		s := startH2(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
		tr, tg := newTestTransport(t, h2Options(), s.url)
		req := newRequest("POST")
		req.Body = io.MultiReader(strings.NewReader("part"), errReader{errors.New("client went bad")})
		req.ContentLength = -1
		_, _, err := h2Fetch(t, tr, tg, req)
		wantCause(t, err, failure.ClientBodyInvalid)
	})
	t.Run("client body short of its length", func(t *testing.T) {
		s := startH2(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
		tr, tg := newTestTransport(t, h2Options(), s.url)
		req := newRequest("POST")
		req.Body = strings.NewReader("short")
		req.ContentLength = 100
		_, _, err := h2Fetch(t, tr, tg, req)
		wantCause(t, err, failure.ClientBodyInvalid)
	})
	t.Run("client gone", func(t *testing.T) {
		arrived := make(chan struct{}, 1)
		s := startH2Raw(t, func(*http2.Framer, uint32, *srvConn) { arrived <- struct{}{} })
		tr, tg := newTestTransport(t, h2Options(), s.url)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			<-arrived // the request reached the upstream
			cancel()
		}()
		_, err := tr.RoundTrip(ctx, tg, newRequest("GET"))
		wantCause(t, err, failure.ClientCanceled)
	})
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// TestH2BodyFailures checks a body that breaks after the head: a reset
// mid-stream is a truncated body, a stall a body timeout, and a declared
// length not met a truncated body.
func TestH2BodyFailures(t *testing.T) {
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	s := startH2(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/reset":
			io.WriteString(w, "part")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // RST_STREAM
		case "/stall":
			io.WriteString(w, "part")
			w.(http.Flusher).Flush()
			select {
			case <-stall:
			case <-r.Context().Done():
			}
		case "/short":
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "part")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
	}))
	opt := h2Options()
	opt.IdleTimeout = 200 * time.Millisecond
	tr, tg := newTestTransport(t, opt, s.url)
	for path, want := range map[string]failure.Kind{
		"/reset": failure.TruncatedBody,
		"/stall": failure.BodyTimeout,
		"/short": failure.TruncatedBody,
	} {
		t.Run(path, func(t *testing.T) {
			req := newRequest("GET")
			req.Target = path
			resp, _, err := h2Fetch(t, tr, tg, req)
			if resp == nil || resp.Status != 200 {
				t.Fatalf("no response head before the body broke: %v", err)
			}
			fe := wantCause(t, err, want)
			if fe.Phase != failure.PhaseReadBody {
				t.Fatalf("phase %v", fe.Phase)
			}
		})
	}
}

// TestH2BodyErrorKeepsConnection checks that a stream that breaks does not
// take the connection with it: the next request reuses it.
func TestH2BodyErrorKeepsConnection(t *testing.T) {
	s := startH2(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/reset" {
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
	}))
	tr, tg := newTestTransport(t, h2Options(), s.url)
	req := newRequest("GET")
	req.Target = "/reset"
	resp, err := tr.RoundTrip(context.Background(), tg, req)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	wantCause(t, err, failure.TruncatedBody)
	if resp.Body.Err() == nil {
		t.Fatal("Body.Err is nil after a failed read")
	}
	resp.Body.Close()
	resp, _, err = h2Fetch(t, tr, tg, newRequest("GET"))
	if err != nil || !resp.Reused || s.accepts.Load() != 1 {
		t.Fatalf("err %v reused %v accepts %d", err, resp != nil && resp.Reused, s.accepts.Load())
	}
}

// TestH2Concurrent multiplexes requests on one connection.
func TestH2Concurrent(t *testing.T) {
	s := startH2(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	}))
	tr, tg := newTestTransport(t, h2Options(), s.url)
	// One request first, so that the others find the connection.
	if _, _, err := h2Fetch(t, tr, tg, newRequest("GET")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			req := newRequest("GET")
			req.Target = "/" + strconv.Itoa(i)
			resp, b, err := h2Fetch(t, tr, tg, req)
			if err == nil && (resp.Status != 200 || string(b) != req.Target) {
				err = errors.New("wrong answer " + string(b))
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if s.accepts.Load() != 1 {
		t.Fatalf("%d connections, want 1", s.accepts.Load())
	}
}

// TestH2NoPooling checks that max_idle_per_target 0 gives every request a
// connection of its own.
func TestH2NoPooling(t *testing.T) {
	s := startH2(t, nil, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	opt := h2Options()
	opt.MaxIdlePerTarget = 0
	tr, tg := newTestTransport(t, opt, s.url)
	for range 3 {
		if _, _, err := h2Fetch(t, tr, tg, newRequest("GET")); err != nil {
			t.Fatal(err)
		}
	}
	if opened, _, _ := tg.ConnStats(); opened != 3 || s.accepts.Load() != 3 {
		t.Fatalf("opened %d, accepted %d, want 3", opened, s.accepts.Load())
	}
}

// TestH2Adoption checks reloads: a Transport built with the same settings
// adopts an h2 target with its connection; a change of protocol does not.
func TestH2Adoption(t *testing.T) {
	s := startH2(t, nil, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	opt := h2Options()
	opt.ConnKey = "k"
	spec := []TargetSpec{{URL: s.url, Weight: 1}}
	old, err := NewTargets(opt, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := h2Fetch(t, old, old.Targets()[0], newRequest("GET")); err != nil {
		t.Fatal(err)
	}

	next, err := NewTargets(opt, spec, old)
	if err != nil {
		t.Fatal(err)
	}
	old.Close()
	tg := next.Targets()[0]
	if tg != old.Targets()[0] {
		t.Fatal("target not adopted")
	}
	resp, _, err := h2Fetch(t, next, tg, newRequest("GET"))
	if err != nil || !resp.Reused || s.accepts.Load() != 1 {
		t.Fatalf("after adoption: err %v, accepts %d", err, s.accepts.Load())
	}

	h1 := opt
	h1.H2 = false
	third, err := NewTargets(h1, spec, next)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	if third.Targets()[0] == tg || third.Targets()[0].h2 != nil {
		t.Fatal("an HTTP/1.1 transport adopted an h2 target")
	}
	next.Close()
	// Closing the transport that owns the target closes its connection.
	waitFor(t, 5*time.Second, "the upstream connection to close", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns) == 0
	})
}
