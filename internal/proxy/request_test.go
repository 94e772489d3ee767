package proxy_test

import (
	"encoding/json"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// recordingGateway runs candor with one route to a recording upstream:
// top is prepended to the configuration (top-level keys), route is added
// to the route.
func recordingGateway(t *testing.T, top, route string) (*gateway, *recordingUpstream) {
	t.Helper()
	up := startRecording(t)
	return startGateway(t, top+oneUpstream(up.url(), route)), up
}

// wantFields checks that r carries exactly the given values for each named
// field (nil: the field is absent).
func wantFields(t *testing.T, r seenRequest, want map[string][]string) {
	t.Helper()
	for name, vs := range want {
		if got := r.values(name); !slices.Equal(got, vs) {
			t.Errorf("upstream received %s = %q, want %q\nall fields: %q", name, got, vs, r.Fields)
		}
	}
}

// spoofed are forwarding fields a client sends, in every spelling.
const spoofed = "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\nX-Forwarded-Proto: https\r\n" +
	"X-Forwarded-Host: evil.test\r\nForwarded: for=6.6.6.6;proto=https\r\nX_Forwarded_For: 6.6.6.6\r\n" +
	"X-Real-Ip: 6.6.6.6\r\n"

// TestForwardingUntrustedPeer: from a peer outside trusted_proxies (none
// configured, or networks that do not hold 127.0.0.1), the client's
// forwarding fields are dropped and candor's own sent, the peer being the
// client.
func TestForwardingUntrustedPeer(t *testing.T) {
	for _, tc := range []struct{ name, top string }{
		{"no trusted proxies", ""},
		{"peer outside the trusted networks", "trusted_proxies: [10.0.0.0/8, \"2001:db8::/32\", 127.0.0.2/32]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, up := recordingGateway(t, tc.top, "")
			e := rawExchange(t, g.st.GatewayAddr(), "GET /f HTTP/1.1\r\nHost: example.test\r\n"+spoofed+"\r\n")
			if e.resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", e.resp.StatusCode, e.body)
			}
			r := up.wait(t, 1)[0]
			wantFields(t, r, map[string][]string{
				"X-Forwarded-For":   {"127.0.0.1"},
				"X-Forwarded-Proto": {"http"},
				"X-Forwarded-Host":  {"example.test"},
				"Forwarded":         {"for=127.0.0.1;proto=http;host=example.test"},
				"X_Forwarded_For":   nil,
				"X-Real-Ip":         nil,
			})
			for _, f := range r.Fields {
				if strings.Contains(f[1], "6.6.6.6") || strings.Contains(f[1], "7.7.7.7") || strings.Contains(f[1], "evil") {
					t.Errorf("upstream received the client's %s: %s", f[0], f[1])
				}
			}
		})
	}
}

// TestForwardingTrustedPeer: from a peer inside trusted_proxies, the
// client's fields are kept and candor appends its hop.
func TestForwardingTrustedPeer(t *testing.T) {
	g, up := recordingGateway(t, "trusted_proxies: [\"2001:db8::/32\", 127.0.0.0/8]\n", "")
	addr := g.st.GatewayAddr()

	// A proxy in front that set every field (X-Forwarded-For on two lines,
	// Forwarded with an IPv6 client).
	e := rawExchange(t, addr, "GET /f HTTP/1.1\r\nHost: example.test\r\n"+
		"X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-For: 10.1.1.1\r\nX-Forwarded-Proto: https\r\n"+
		"X-Forwarded-Host: shop.example\r\nForwarded: for=203.0.113.9;proto=https;host=shop.example\r\n"+
		"Forwarded: for=\"[2001:db8::7]\"\r\nX-Real-Ip: 6.6.6.6\r\n\r\n")
	if e.resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", e.resp.StatusCode, e.body)
	}
	wantFields(t, up.wait(t, 1)[0], map[string][]string{
		"X-Forwarded-For":   {"203.0.113.9, 10.1.1.1, 127.0.0.1"},
		"X-Forwarded-Proto": {"https"},
		"X-Forwarded-Host":  {"shop.example"},
		"Forwarded":         {`for=203.0.113.9;proto=https;host=shop.example, for="[2001:db8::7]", for=127.0.0.1;proto=http;host=example.test`},
		"X-Real-Ip":         nil,
	})

	// A trusted peer that sent none: candor's own.
	e = rawExchange(t, addr, "GET /g HTTP/1.1\r\nHost: example.test:8080\r\n\r\n")
	if e.resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", e.resp.StatusCode, e.body)
	}
	wantFields(t, up.wait(t, 2)[1], map[string][]string{
		"X-Forwarded-For":   {"127.0.0.1"},
		"X-Forwarded-Proto": {"http"},
		"X-Forwarded-Host":  {"example.test:8080"},
		"Forwarded":         {`for=127.0.0.1;proto=http;host="example.test:8080"`},
	})

	// The log names the peer, never an address from the fields.
	rec := g.log.record(t, e.resp.Header.Get("X-Request-Id"))
	if p, _ := rec["peer"].(string); !strings.HasPrefix(p, "127.0.0.1:") {
		t.Errorf("log peer %q, want the connection's address", p)
	}
}

// TestForwardingIPv6Peer: an IPv6 peer is quoted in brackets in Forwarded
// (RFC 7239 §6), bare in X-Forwarded-For.
func TestForwardingIPv6Peer(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	ln.Close()
	for _, tc := range []struct {
		name, top string
		fwd, xff  string
	}{
		{"untrusted", "", `for="[::1]";proto=http;host="[::1]:81"`, "::1"},
		{"trusted", "trusted_proxies: [\"::1/128\"]\n",
			`for=192.0.2.60;proto=https, for="[::1]";proto=http;host="[::1]:81"`, "192.0.2.60, ::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := startRecording(t)
			yaml := strings.Replace(tc.top+oneUpstream(up.url(), ""), "listen: 127.0.0.1:0", `listen: "[::1]:0"`, 1)
			g := startGateway(t, yaml)
			e := rawExchange(t, g.st.GatewayAddr(), "GET /f HTTP/1.1\r\nHost: [::1]:81\r\n"+
				"Forwarded: for=192.0.2.60;proto=https\r\nX-Forwarded-For: 192.0.2.60\r\n\r\n")
			if e.resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", e.resp.StatusCode, e.body)
			}
			wantFields(t, up.wait(t, 1)[0], map[string][]string{
				"Forwarded":       {tc.fwd},
				"X-Forwarded-For": {tc.xff},
			})
		})
	}
}

// TestHopByHopFields: hop-by-hop fields and the fields named in
// Connection are not forwarded; a Connection option naming Host, the
// framing or candor's own fields changes nothing of them; Upgrade: h2c is
// never forwarded, even on a route that relays upgrades.
func TestHopByHopFields(t *testing.T) {
	plain, plainUp := recordingGateway(t, "", "")
	upg, upgUp := recordingGateway(t, "", "    upgrade: {protocols: [websocket]}")
	absent := []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Upgrade",
		"Http2-Settings", "Proxy-Authorization", "Expect", "X-Hop"}
	for _, tc := range []struct {
		name string
		gw   *gateway
		up   *recordingUpstream
		req  string
		want map[string][]string
		body string
	}{
		{
			name: "hop-by-hop fields and Connection options",
			req: "POST /h HTTP/1.1\r\nHost: example.test\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n" +
				"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\n" +
				"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n" +
				"X-Kept: yes\r\nContent-Length: 5\r\n\r\nhello",
			want: map[string][]string{"X-Kept": {"yes"}, "Content-Length": {"5"}, "Host": {"example.test"}},
			body: "hello",
		},
		{
			name: "Connection: close, Content-Length",
			req:  "POST /h HTTP/1.1\r\nHost: example.test\r\nConnection: close, Content-Length\r\nContent-Length: 5\r\n\r\nhello",
			want: map[string][]string{"Content-Length": {"5"}, "Transfer-Encoding": nil},
			body: "hello",
		},
		{
			name: "Connection: Host",
			req:  "GET /h HTTP/1.1\r\nHost: example.test\r\nConnection: Host\r\n\r\n",
			want: map[string][]string{"Host": {"example.test"}, "X-Forwarded-Host": {"example.test"}},
		},
		{
			name: "Connection: Transfer-Encoding",
			req: "POST /h HTTP/1.1\r\nHost: example.test\r\nConnection: Transfer-Encoding\r\n" +
				"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			want: map[string][]string{"Transfer-Encoding": {"chunked"}, "Content-Length": nil},
			body: "hello",
		},
		{
			name: "Connection naming candor's own fields",
			req: "GET /h HTTP/1.1\r\nHost: example.test\r\nConnection: X-Forwarded-For, X-Request-Id, Forwarded, X-Forwarded-Proto\r\n" +
				"X-Request-Id: hop-1\r\n\r\n",
			want: map[string][]string{"X-Request-Id": {"hop-1"}, "X-Forwarded-For": {"127.0.0.1"},
				"X-Forwarded-Proto": {"http"}, "Forwarded": {"for=127.0.0.1;proto=http;host=example.test"}},
		},
		{
			name: "Expect",
			req:  "POST /h HTTP/1.1\r\nHost: example.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
			want: map[string][]string{"Content-Length": {"5"}},
			body: "hello",
		},
		{
			name: "Upgrade on a route without upgrade",
			req:  "GET /h HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		},
		{
			name: "Upgrade: h2c on a route with upgrade",
			gw:   upg, up: upgUp,
			req: "GET /h HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n" +
				"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
		},
		{
			name: "h2c cut from an offered list",
			gw:   upg, up: upgUp,
			req: "GET /h HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c, websocket\r\n" +
				"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nSec-WebSocket-Version: 13\r\n\r\n",
			// Relayed as a WebSocket upgrade, which the upstream
			// declines with its 200.
			want: map[string][]string{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Http2-Settings": nil},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gw, up := tc.gw, tc.up
			if gw == nil {
				gw, up = plain, plainUp
			}
			n := len(up.requests())
			e := rawExchange(t, gw.st.GatewayAddr(), tc.req)
			if e.resp.StatusCode != 200 || string(e.body) != "ok" {
				t.Fatalf("status %d: %s", e.resp.StatusCode, e.body)
			}
			r := up.wait(t, n+1)[n]
			if !r.Complete || string(r.Body) != tc.body {
				t.Fatalf("upstream received body %q complete=%v (%s)", r.Body, r.Complete, r.Err)
			}
			want := map[string][]string{}
			for _, name := range absent {
				want[name] = nil
			}
			for k, v := range tc.want {
				want[k] = v
			}
			wantFields(t, r, want)
			if hosts := r.values("Host"); len(hosts) != 1 {
				t.Errorf("upstream received Host %q", hosts)
			}
		})
	}
}

// TestMaxBodyContentLength: a declared Content-Length over the route's
// max_body is answered 413 before any of the body is read (no 100
// Continue) and before an upstream is contacted; the connection is
// closed. A body of exactly max_body passes.
func TestMaxBodyContentLength(t *testing.T) {
	g, up := recordingGateway(t, "", "    max_body: 1KiB")
	addr := g.st.GatewayAddr()
	for _, req := range []string{
		"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n" + strings.Repeat("a", 1025),
		"POST /b HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1000000\r\n\r\n",
	} {
		e := rawExchange(t, addr, req)
		if e.continues != 0 {
			t.Errorf("the gateway sent 100 Continue for a body it refuses")
		}
		wantProblem(t, result{status: e.resp.StatusCode, header: e.resp.Header, body: e.body}, 413, "request_body_too_large")
		if !e.closed() {
			t.Errorf("connection kept open after the 413")
		}
		rec := g.log.record(t, e.resp.Header.Get("X-Request-Id"))
		if rec["failure.kind"] != "request_body_too_large" || rec["status"] != 413.0 {
			t.Errorf("log record %v", rec)
		}
	}
	if n := up.connections(); n != 0 {
		t.Fatalf("upstream contacted %d times for refused bodies", n)
	}

	e := rawExchange(t, addr, "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\n\r\n"+strings.Repeat("a", 1024))
	if e.resp.StatusCode != 200 {
		t.Fatalf("a body of exactly max_body: %d %s", e.resp.StatusCode, e.body)
	}
	if r := up.wait(t, 1)[0]; !r.Complete || len(r.Body) != 1024 {
		t.Fatalf("upstream received %d bytes, complete=%v", len(r.Body), r.Complete)
	}
}

// TestMaxBodyChunked: a chunked body that grows past max_body is answered
// 413; the upstream request is cut off (the upstream never sees a complete
// request) and its connection closed, and so is the client's. A chunked
// body of exactly max_body passes.
func TestMaxBodyChunked(t *testing.T) {
	g, up := recordingGateway(t, "", "    max_body: 16KiB")
	addr := g.st.GatewayAddr()
	chunk := "2000\r\n" + strings.Repeat("a", 8192) + "\r\n"

	e := rawExchange(t, addr, "POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+chunk+chunk+"1\r\nb\r\n0\r\n\r\n")
	wantProblem(t, result{status: e.resp.StatusCode, header: e.resp.Header, body: e.body}, 413, "request_body_too_large")
	if !e.closed() {
		t.Errorf("connection kept open after the 413")
	}
	rec := g.log.record(t, e.resp.Header.Get("X-Request-Id"))
	if rec["failure.kind"] != "request_body_too_large" || rec["status"] != 413.0 {
		t.Errorf("log record %v", rec)
	}
	up.waitClosed(t, 1)
	for _, r := range up.requests() {
		if r.Complete {
			t.Fatalf("upstream received a complete request (%d body bytes)", len(r.Body))
		}
	}

	n := len(up.requests())
	e = rawExchange(t, addr, "POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+chunk+chunk+"0\r\n\r\n")
	if e.resp.StatusCode != 200 {
		t.Fatalf("a chunked body of exactly max_body: %d %s", e.resp.StatusCode, e.body)
	}
	if r := up.wait(t, n+1)[n]; !r.Complete || len(r.Body) != 16384 {
		t.Fatalf("upstream received %d bytes, complete=%v (%s)", len(r.Body), r.Complete, r.Err)
	}
}

// TestClientBodyErrorsThroughGateway: a client body that breaks while it
// is forwarded is the client's cause (400 client_body_invalid for bad
// chunking, 499 client_canceled for a client that closed mid-body), never
// an upstream failure; the upstream never sees a complete request.
func TestClientBodyErrorsThroughGateway(t *testing.T) {
	g, up := recordingGateway(t, "", "")
	addr := g.st.GatewayAddr()
	big := "2000\r\n" + strings.Repeat("a", 8192) + "\r\n"

	// Malformed chunking after 8 KiB were forwarded.
	e := rawExchange(t, addr, "POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+big+"zz\r\n")
	wantProblem(t, result{status: e.resp.StatusCode, header: e.resp.Header, body: e.body}, 400, "client_body_invalid")
	if !e.closed() {
		t.Errorf("connection kept open after the 400")
	}
	rec := g.log.record(t, e.resp.Header.Get("X-Request-Id"))
	if rec["failure.kind"] != "client_body_invalid" || rec["status"] != 400.0 {
		t.Errorf("log record %v", rec)
	}
	up.waitClosed(t, 1)

	// A client that closes mid-body.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("POST /e HTTP/1.1\r\nHost: x\r\nX-Request-Id: gone-1\r\nContent-Length: 20000\r\n\r\n" + strings.Repeat("a", 9000)))
	c.Close()
	rec = g.log.record(t, "gone-1")
	if rec["failure.kind"] != "client_canceled" || rec["status"] != 499.0 {
		t.Errorf("log record %v", rec)
	}
	up.waitClosed(t, 2)
	for _, r := range up.requests() {
		if r.Complete {
			t.Fatalf("upstream received a complete request (%d body bytes)", len(r.Body))
		}
	}
	if b, _ := json.Marshal(g.log.records(t)); strings.Contains(string(b), "upstream_write_failed") {
		t.Fatalf("a client body error was logged as the upstream's: %s", b)
	}
}
