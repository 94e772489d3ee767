package fault

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// response builds the bytes the server writes for a Content-Length framed
// response, in its field order.
func response(status, ctype, body string, closing bool) string {
	s := "HTTP/1.1 " + status + "\r\nContent-Type: " + ctype + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n"
	if closing {
		s += "Connection: close\r\n"
	}
	return s + "\r\n" + body
}

func TestServerScripts(t *testing.T) {
	s := startServer(t)
	for _, sc := range Scripts() {
		t.Run(sc.Name, func(t *testing.T) {
			// Without Connection: close: a script always closes.
			got, err := exchange(t, s.Addr(), "GET /script/"+sc.Name+"?x=1 HTTP/1.1\r\nHost: upstream.test\r\n\r\n")
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if string(got) != string(sc.Bytes) {
				t.Errorf("got %d bytes %.200q, want %d bytes %.200q", len(got), got, len(sc.Bytes), sc.Bytes)
			}
		})
	}
}

func TestScriptServer(t *testing.T) {
	sc, ok := Lookup("upstream_malformed_header/obs_fold")
	if !ok {
		t.Fatal("script missing")
	}
	s, err := NewScriptServer(sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, target := range []string{"/", "/ok", "/reset", "/script/pass/ok_json"} {
		got, err := exchange(t, s.Addr(), "GET "+target+" HTTP/1.1\r\nHost: x\r\n\r\n")
		if err != nil || string(got) != string(sc.Bytes) {
			t.Errorf("GET %s = %q, %v; want the script", target, got, err)
		}
	}
	if got := s.Requests(); got != 4 {
		t.Errorf("Requests() = %d, want 4", got)
	}
}

func TestServerResponses(t *testing.T) {
	s := startServer(t)
	tests := []struct {
		name, req, want string
	}{
		{"ok", get("/ok"), response("200 OK", ctypeJSON, `{"ok":true,"path":"/ok"}`, true)},
		{"ok query", get("/ok?a=b"), response("200 OK", ctypeJSON, `{"ok":true,"path":"/ok"}`, true)},
		{"absolute form", "GET http://upstream.test/ok HTTP/1.1\r\nHost: upstream.test\r\nConnection: close\r\n\r\n",
			response("200 OK", ctypeJSON, `{"ok":true,"path":"/ok"}`, true)},
		{"status 500", get("/status/500"), response("500 Internal Server Error", ctypeJSON, `{"status":500}`, true)},
		{"status 503", get("/status/503"), response("503 Service Unavailable", ctypeJSON, `{"status":503}`, true)},
		{"status 599", get("/status/599"), response("599 Status 599", ctypeJSON, `{"status":599}`, true)},
		{"status 204", get("/status/204"), "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"},
		{"status 304", get("/status/304"), "HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n"},
		{"status 205", get("/status/205"), response("205 Reset Content", ctypeJSON, "", true)},
		{"status 1xx refused", get("/status/101"), response("400 Bad Request", ctypeText, "status must be 200-599\n", true)},
		{"status not a number", get("/status/abc"), response("400 Bad Request", ctypeText, "status must be 200-599\n", true)},
		{"unknown path", get("/nope"), response("404 Not Found", ctypeText, "not found\n", true)},
		{"unknown script", get("/script/pass/nope"), response("404 Not Found", ctypeText, "no such script\n", true)},
		{"big", get("/big?bytes=5"), response("200 OK", "application/octet-stream", "xxxxx", true)},
		{"big zero", get("/big?bytes=0"), response("200 OK", "application/octet-stream", "", true)},
		{"chunked", get("/chunked?n=2"), "HTTP/1.1 200 OK\r\nContent-Type: " + ctypeText +
			"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n8\r\nchunk 0\n\r\n8\r\nchunk 1\n\r\n0\r\n\r\n"},
		{"head", "HEAD /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 24\r\nConnection: close\r\n\r\n"},
		{"http/1.0 closes", "GET /ok HTTP/1.0\r\n\r\n", response("200 OK", ctypeJSON, `{"ok":true,"path":"/ok"}`, true)},
		{"close before response", get("/close"), ""},
		{"leading empty line", "\r\n" + get("/ok"), response("200 OK", ctypeJSON, `{"ok":true,"path":"/ok"}`, true)},
		{"bad request line", "BROKEN\r\n\r\n", response("400 Bad Request", ctypeText, "malformed request line\n", true)},
		{"bad header", "GET /ok HTTP/1.1\r\nNoColon\r\n\r\n", response("400 Bad Request", ctypeText, "malformed header field\n", true)},
		{"bad framing", "POST /ok HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
			response("400 Bad Request", ctypeText, "both Transfer-Encoding and Content-Length\n", true)},
		{"head too large", "GET /ok HTTP/1.1\r\nX: " + strings.Repeat("a", 70_000) + "\r\n\r\n",
			response("431 Request Header Fields Too Large", ctypeText, "request head too large\n", true)},
		{"tls on plaintext", "\x16\x03\x01\x00\x05hello",
			response("400 Bad Request", ctypeText, "Client sent a TLS handshake to a plaintext HTTP server.\n", true)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := exchange(t, s.Addr(), tt.req)
			if err != nil {
				t.Fatalf("read: %v (after %q)", err, got)
			}
			if diff := cmp.Diff(tt.want, string(got)); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
		})
	}
}

func TestServerBig(t *testing.T) {
	s := startServer(t)
	const n = 3<<20 + 7
	got, err := exchange(t, s.Addr(), get("/big?bytes="+strconv.Itoa(n)))
	if err != nil {
		t.Fatal(err)
	}
	head := "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: " + strconv.Itoa(n) + "\r\nConnection: close\r\n\r\n"
	if !strings.HasPrefix(string(got), head) || len(got) != len(head)+n || strings.Trim(string(got[len(head):]), "x") != "" {
		t.Errorf("got %d bytes starting %.120q", len(got), got)
	}
}

// TestServerKeepAlive pipelines three requests on one connection; the
// server answers them in order and closes after the one that asks it to.
func TestServerKeepAlive(t *testing.T) {
	s := startServer(t)
	req := "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST /status/201 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" +
		"GET /status/204 HTTP/1.1\r\nHost: x\r\n\r\n" +
		get("/nope")
	want := response("200 OK", ctypeJSON, `{"ok":true,"path":"/ok"}`, false) +
		response("201 Created", ctypeJSON, `{"status":201}`, false) +
		"HTTP/1.1 204 No Content\r\n\r\n" +
		response("404 Not Found", ctypeText, "not found\n", true)
	got, err := exchange(t, s.Addr(), req)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("responses (-want +got):\n%s", diff)
	}
	if n := s.Requests(); n != 4 {
		t.Errorf("Requests() = %d, want 4", n)
	}
}

func TestServerEcho(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.Addr())
	br := bufio.NewReader(c)
	echo := func(req string, wantContinue bool) Received {
		t.Helper()
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if gotContinue := err == nil && resp.StatusCode == http.StatusContinue; gotContinue != wantContinue {
			t.Errorf("interim 100 Continue: %v, want %v", gotContinue, wantContinue)
		} else if gotContinue {
			resp, err = http.ReadResponse(br, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r Received
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatal(err)
		}
		return r
	}

	got := echo("POST /echo?q=1 HTTP/1.1\r\nHost: upstream.test\r\nx-lower: a\r\nX-Dup: 1\r\nX-Dup:  2 \r\ncontent-length: 5\r\n\r\nhello", false)
	want := Received{
		Method: "POST", Target: "/echo?q=1", Proto: "HTTP/1.1",
		Header:  [][2]string{{"Host", "upstream.test"}, {"x-lower", "a"}, {"X-Dup", "1"}, {"X-Dup", "2"}, {"content-length", "5"}},
		BodyLen: 5,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("echo (-want +got):\n%s", diff)
	}

	got2 := echo("PUT /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"+
		"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n", true)
	want2 := Received{
		Method: "PUT", Target: "/echo", Proto: "HTTP/1.1",
		Header:  [][2]string{{"Host", "x"}, {"Transfer-Encoding", "chunked"}, {"Expect", "100-continue"}},
		BodyLen: 5,
	}
	if diff := cmp.Diff(want2, got2); diff != "" {
		t.Errorf("chunked echo (-want +got):\n%s", diff)
	}

	want.Body, want2.Body = []byte("hello"), []byte("abcde")
	if diff := cmp.Diff([]Received{want, want2}, s.Received()); diff != "" {
		t.Errorf("Received() (-want +got):\n%s", diff)
	}
}

func TestServerReceivedKeepsLast64(t *testing.T) {
	s := startServer(t)
	var req strings.Builder
	for i := range maxReceived + 6 {
		req.WriteString("GET /ok?i=" + strconv.Itoa(i) + " HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	req.WriteString(get("/ok?i=last"))
	if _, err := exchange(t, s.Addr(), req.String()); err != nil {
		t.Fatal(err)
	}
	got := s.Received()
	if len(got) != maxReceived || got[0].Target != "/ok?i=7" || got[maxReceived-1].Target != "/ok?i=last" {
		t.Errorf("Received() has %d entries from %q to %q", len(got), got[0].Target, got[len(got)-1].Target)
	}
}

func TestServerReset(t *testing.T) {
	s := startServer(t)
	got, err := exchange(t, s.Addr(), get("/reset"))
	if !errors.Is(err, syscall.ECONNRESET) || len(got) != 0 {
		t.Errorf("got %q, %v; want nothing and ECONNRESET", got, err)
	}
}

func TestServerIdleClose(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.Addr())
	if _, err := io.WriteString(c, "GET /ok?idle_ms=20 HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := response("200 OK", ctypeJSON, `{"ok":true,"path":"/ok"}`, false); string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("closed after %v, want at least 20ms", d)
	}
}

func TestServerStallHead(t *testing.T) {
	s := startServer(t)
	for _, path := range []string{"/stall-head", "/slow-head"} {
		start := time.Now()
		got, err := exchange(t, s.Addr(), get(path+"?ms=50"))
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 50*time.Millisecond {
			t.Errorf("%s answered after %v, want at least 50ms", path, d)
		}
		if want := response("200 OK", ctypeJSON, `{"ok":true,"path":"`+path+`"}`, true); string(got) != want {
			t.Errorf("%s: got %q, want %q", path, got, want)
		}
	}
}

func TestServerStallBody(t *testing.T) {
	s := startServer(t)
	start := time.Now()
	got, err := exchange(t, s.Addr(), get("/stall-body?ms=50"))
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("closed after %v, want at least 50ms", d)
	}
	if want := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n0123456789"; string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// closePromptly closes s and fails if that takes long: stalls must end at
// once.
func closePromptly(t *testing.T, s *Server) {
	t.Helper()
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
}

func TestCloseEndsStallBody(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.Addr())
	if _, err := io.WriteString(c, get("/stall-body")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	// The server is now stalled mid-body.
	closePromptly(t, s)
	if n, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("body read after Close: %d bytes, %v; want a truncated body", len(n), err)
	}
}

func TestCloseEndsStallHead(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.Addr())
	if _, err := io.WriteString(c, get("/stall-head")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the request head", func() bool { return s.Requests() == 1 })
	closePromptly(t, s)
	if got, err := io.ReadAll(c); len(got) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
		t.Errorf("got %q, %v; want nothing", got, err)
	}
}

// TestStallEndsOnPeerClose checks that a stall without ms ends when the
// client goes away: Close then has nothing to interrupt.
func TestStallEndsOnPeerClose(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.Addr())
	if _, err := io.WriteString(c, get("/stall-head")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the request head", func() bool { return s.Requests() == 1 })
	c.Close()
	waitFor(t, "the connection to end", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns) == 0
	})
}

func TestCloseIdempotent(t *testing.T) {
	s, err := NewServer()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestPlaintextServerRejectsTLS(t *testing.T) {
	s := startServer(t)
	c := tls.Client(dial(t, s.Addr()), &tls.Config{ServerName: "upstream.test"})
	err := c.Handshake()
	if _, ok := errors.AsType[tls.RecordHeaderError](err); !ok {
		t.Errorf("handshake with a plaintext server: %v; want tls.RecordHeaderError", err)
	}
}

// TestDropNext: after a ?drop_next=1 response, the connection's next
// request is read and the connection closed without an answer.
func TestDropNext(t *testing.T) {
	s, err := NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /ok?drop_next=1 HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("first request: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	io.WriteString(c, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("second request answered: %q %v", rest, err)
	}
	if s.Requests() != 2 {
		t.Fatalf("server read %d requests, want 2", s.Requests())
	}
}

// TestNewServerAt: a server comes back on the port it had.
func TestNewServerAt(t *testing.T) {
	s, err := NewServer()
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	s.Close()
	s2, err := NewServerAt(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.Addr() != addr {
		t.Fatalf("listening on %s, want %s", s2.Addr(), addr)
	}
}
