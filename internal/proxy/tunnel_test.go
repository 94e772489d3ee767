package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"candor/internal/proxy"
	"candor/internal/router"
	"candor/internal/upstream"
)

// End-to-end tests of protocol upgrades: a real WebSocket upstream
// (coder/websocket in net/http) and a real WebSocket client, through the
// real gateway.

// wsUpstream is a WebSocket upstream on 127.0.0.1. Each accepted WebSocket
// is handed to handle; a request without Upgrade gets a plain 200 "plain".
type wsUpstream struct {
	url string
	mu  sync.Mutex
	ws  []*websocket.Conn
	// upgrades receives the head of every upgrade request.
	upgrades chan http.Header
}

func startWS(t *testing.T, handle func(ctx context.Context, c *websocket.Conn)) *wsUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &wsUpstream{url: "http://" + ln.Addr().String(), upgrades: make(chan http.Header, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" {
			io.WriteString(w, "plain")
			return
		}
		select {
		case u.upgrades <- r.Header.Clone():
		default:
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		c.SetReadLimit(16 << 20)
		u.mu.Lock()
		u.ws = append(u.ws, c)
		wg.Add(1)
		u.mu.Unlock()
		defer wg.Done()
		handle(ctx, c)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() {
		cancel()
		srv.Close()
		u.mu.Lock()
		for _, c := range u.ws {
			c.CloseNow()
		}
		u.mu.Unlock()
		wg.Wait()
	})
	return u
}

// echoWS echoes every message with its type until the connection ends.
func echoWS(ctx context.Context, c *websocket.Conn) {
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			return
		}
		if c.Write(ctx, typ, msg) != nil {
			return
		}
	}
}

// upgradeRoute is the route configuration line that allows WebSocket.
func upgradeRoute(idle string) string {
	return "    upgrade: {protocols: [websocket], idle: " + idle + "}"
}

// dialWS opens a WebSocket through the gateway with request id id (and
// Host host when not empty); it is closed at the end of the test.
func dialWS(t *testing.T, g *gateway, id, host string) (*websocket.Conn, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+g.st.GatewayAddr()+"/ws", &websocket.DialOptions{
		HTTPHeader: http.Header{"X-Request-Id": {id}},
		Host:       host,
	})
	if err != nil {
		t.Fatalf("dial through the gateway: %v", err)
	}
	c.SetReadLimit(16 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c, resp
}

// roundTrip sends msg and expects it back.
func roundTrip(t *testing.T, c *websocket.Conn, typ websocket.MessageType, msg []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, typ, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	gotTyp, got, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if gotTyp != typ || !bytes.Equal(got, msg) {
		t.Fatalf("echo: type %v, %d bytes; want type %v, %d bytes", gotTyp, len(got), typ, len(msg))
	}
}

// wantTunnelRecord checks the log record of a tunnel that ended.
func wantTunnelRecord(t *testing.T, g *gateway, id string, ends ...string) map[string]any {
	t.Helper()
	rec := g.log.record(t, id)
	if rec["status"] != float64(101) || rec["source"] != "upstream" || rec["failure.kind"] != nil ||
		rec["tunnel.protocol"] != "websocket" {
		t.Fatalf("tunnel log record %v", rec)
	}
	end, _ := rec["tunnel.end"].(string)
	for _, e := range ends {
		if end == e {
			return rec
		}
	}
	t.Fatalf("tunnel.end %q, want one of %v; record %v", end, ends, rec)
	return nil
}

// TestWebSocketEcho: text and binary messages, small and large, go both
// ways; the client's handshake fields reach the upstream and the 101's
// reach the client; the upstream's unsolicited message arrives; the client
// closes cleanly and the log record counts the bytes.
func TestWebSocketEcho(t *testing.T) {
	up := startWS(t, func(ctx context.Context, c *websocket.Conn) {
		if c.Write(ctx, websocket.MessageText, []byte("welcome")) != nil {
			return
		}
		echoWS(ctx, c)
	})
	g := startGateway(t, oneUpstream(up.url, upgradeRoute("10m")))
	c, resp := dialWS(t, g, "ws-echo-1", "")
	if resp.StatusCode != 101 || resp.Header.Get("X-Request-Id") != "ws-echo-1" || resp.Header.Get("Sec-Websocket-Accept") == "" {
		t.Fatalf("handshake response %d %v", resp.StatusCode, resp.Header)
	}
	hdr := <-up.upgrades
	if hdr.Get("Sec-Websocket-Key") == "" || hdr.Get("Sec-Websocket-Version") != "13" || hdr.Get("X-Request-Id") != "ws-echo-1" ||
		!strings.EqualFold(hdr.Get("Upgrade"), "websocket") {
		t.Fatalf("upstream handshake request %v", hdr)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if typ, msg, err := c.Read(ctx); err != nil || typ != websocket.MessageText || string(msg) != "welcome" {
		t.Fatalf("upstream's first message: %v %q %v", typ, msg, err)
	}
	big := make([]byte, 3<<20)
	rand.Read(big)
	roundTrip(t, c, websocket.MessageText, []byte("hello"))
	roundTrip(t, c, websocket.MessageBinary, []byte{0, 1, 2, 0xff})
	roundTrip(t, c, websocket.MessageBinary, big)
	roundTrip(t, c, websocket.MessageText, bytes.Repeat([]byte("é"), 300<<10))
	if n := g.st.Handler.Tunnels(); n != 1 {
		t.Fatalf("Tunnels() = %d, want 1", n)
	}
	if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
		t.Fatalf("clean close: %v", err)
	}
	// In the close handshake the server closes TCP first (RFC 6455
	// §7.1.1), so either side may be the first to close.
	rec := wantTunnelRecord(t, g, "ws-echo-1", "client_closed", "upstream_closed")
	up1, _ := rec["tunnel.bytes_up"].(float64)
	down, _ := rec["tunnel.bytes_down"].(float64)
	if min := float64(len(big) + 600<<10); up1 < min || down < min {
		t.Fatalf("tunnel bytes up %v down %v, want more than %v each", up1, down, min)
	}
	eventually(t, 5*time.Second, "tunnel deregistered", func() bool { return g.st.Handler.Tunnels() == 0 })
}

// TestWebSocketClientGone: a client that drops its connection without a
// close handshake ends the tunnel as client_closed; the upstream sees its
// connection end. This upstream never closes its side: the half-closed
// tunnel is closed after min(idle, 5s) of silence, still as client_closed.
func TestWebSocketClientGone(t *testing.T) {
	ended := make(chan error, 1)
	up := startWS(t, func(ctx context.Context, c *websocket.Conn) {
		for {
			if _, _, err := c.Read(ctx); err != nil {
				ended <- err
				<-ctx.Done() // and never close
				return
			}
		}
	})
	g := startGateway(t, oneUpstream(up.url, upgradeRoute("300ms")))
	c, _ := dialWS(t, g, "ws-gone-1", "")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte("bye")); err != nil {
		t.Fatal(err)
	}
	c.CloseNow()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream did not see the client go")
	}
	wantTunnelRecord(t, g, "ws-gone-1", "client_closed")
}

// TestWebSocketUpstreamCloses: the upstream's close handshake reaches the
// client with its status; an upstream that drops its connection ends the
// tunnel as upstream_closed.
func TestWebSocketUpstreamCloses(t *testing.T) {
	up := startWS(t, func(ctx context.Context, c *websocket.Conn) {
		_, msg, err := c.Read(ctx)
		if err != nil {
			return
		}
		if string(msg) == "close" {
			c.Close(4000, "bye")
			return
		}
		c.CloseNow() // drop
	})
	g := startGateway(t, oneUpstream(up.url, upgradeRoute("10m")))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()

	c, _ := dialWS(t, g, "ws-up-close-1", "")
	c.Write(ctx, websocket.MessageText, []byte("close"))
	_, _, err := c.Read(ctx)
	if websocket.CloseStatus(err) != 4000 {
		t.Fatalf("client read %v, want close status 4000", err)
	}
	wantTunnelRecord(t, g, "ws-up-close-1", "client_closed", "upstream_closed")

	c2, _ := dialWS(t, g, "ws-up-drop-1", "")
	c2.Write(ctx, websocket.MessageText, []byte("drop"))
	if _, _, err := c2.Read(ctx); err == nil || websocket.CloseStatus(err) != -1 {
		t.Fatalf("client read %v, want the connection cut", err)
	}
	c2.CloseNow()
	wantTunnelRecord(t, g, "ws-up-drop-1", "upstream_closed")
}

// TestWebSocketIdle: traffic in either direction keeps a tunnel open;
// idle (200ms) without a byte either way closes it, and the record says
// idle.
func TestWebSocketIdle(t *testing.T) {
	up := startWS(t, func(ctx context.Context, c *websocket.Conn) {
		if _, _, err := c.Read(ctx); err != nil {
			return
		}
		// Only the upstream talks, for longer than idle.
		for i := range 6 {
			time.Sleep(70 * time.Millisecond)
			if c.Write(ctx, websocket.MessageText, []byte{'0' + byte(i)}) != nil {
				return
			}
		}
		c.Read(ctx) // then silence
	})
	g := startGateway(t, oneUpstream(up.url, upgradeRoute("200ms")))
	c, _ := dialWS(t, g, "ws-idle-1", "")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte("go")); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		if _, msg, err := c.Read(ctx); err != nil || msg[0] != '0'+byte(i) {
			t.Fatalf("message %d: %q %v (one direction's traffic must keep the tunnel open)", i, msg, err)
		}
	}
	quiet := time.Now()
	if _, _, err := c.Read(ctx); err == nil {
		t.Fatal("read succeeded on an idle tunnel")
	}
	if d := time.Since(quiet); d < 150*time.Millisecond || d > 2*time.Second {
		t.Fatalf("idle tunnel closed after %v, want about 200ms", d)
	}
	wantTunnelRecord(t, g, "ws-idle-1", "idle")
}

// TestUpgradeNotAllowed: on a route without upgrade, or offering a
// protocol the route does not allow, an upgrade request is forwarded as a
// plain GET: the upstream sees neither Upgrade nor Connection.
func TestUpgradeNotAllowed(t *testing.T) {
	up := faultServer(t)
	g := startGateway(t, `listen: 127.0.0.1:0
log: {level: debug, access: true}
routes:
  - name: plain
    match: {host: plain.test}
    upstream: u
  - name: ws
    upstream: u
`+upgradeRoute("10m")+`
upstreams:
  u:
    targets: [{url: "`+up.URL()+`"}]
`)
	for _, tc := range []struct{ name, host, upgrade string }{
		{"route without upgrade", "plain.test", "websocket"},
		{"protocol not allowed", "ws.test", "foo/1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := get(t, g.base+"/echo?case="+strings.ReplaceAll(tc.name, " ", "-"), map[string]string{
				"Host": tc.host, "Connection": "Upgrade", "Upgrade": tc.upgrade,
				"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13",
			})
			if res.status != 200 {
				t.Fatalf("status %d %s", res.status, res.body)
			}
			var seen bool
			for _, r := range up.Received() {
				if !strings.Contains(r.Target, strings.ReplaceAll(tc.name, " ", "-")) {
					continue
				}
				seen = true
				if r.Method != "GET" {
					t.Errorf("method %s", r.Method)
				}
				key := false
				for _, f := range r.Header {
					switch strings.ToLower(f[0]) {
					case "upgrade", "connection":
						t.Errorf("upstream received %s: %s", f[0], f[1])
					case "sec-websocket-key":
						key = true
					}
				}
				if !key {
					t.Errorf("end-to-end Sec-WebSocket-Key not forwarded: %v", r.Header)
				}
			}
			if !seen {
				t.Fatal("the upstream received no request")
			}
		})
	}
}

// TestUpgradeDeclined: an upstream that answers an upgrade with an ordinary
// response (400 here) is passed through as such.
func TestUpgradeDeclined(t *testing.T) {
	up := faultServer(t)
	g := startGateway(t, oneUpstream(up.URL(), upgradeRoute("10m")))
	res := get(t, g.base+"/status/400", map[string]string{
		"Connection": "Upgrade", "Upgrade": "websocket", "X-Request-Id": "declined-1",
		"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13",
	})
	if res.status != 400 || strings.TrimSpace(string(res.body)) != `{"status":400}` {
		t.Fatalf("got %d %q, want the upstream's 400", res.status, res.body)
	}
	rec := g.log.record(t, "declined-1")
	if rec["status"] != float64(400) || rec["source"] != "upstream" || rec["tunnel.end"] != nil {
		t.Fatalf("log record %v", rec)
	}
	var asked bool
	for _, r := range up.Received() {
		for _, f := range r.Header {
			if strings.EqualFold(f[0], "Upgrade") && f[1] == "websocket" {
				asked = true
			}
		}
	}
	if !asked {
		t.Fatal("the upstream was not asked to upgrade")
	}
}

// scriptedUpstream accepts connections on 127.0.0.1 and hands each, after
// its request head (returned as read), to serve.
func scriptedUpstream(t *testing.T, serve func(c net.Conn, br *bufio.Reader, head string)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				var head strings.Builder
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					head.WriteString(line)
					if line == "\r\n" {
						break
					}
				}
				serve(c, br, head.String())
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// TestUpgradeToOtherProtocol: a 101 to a protocol the request did not offer
// is a 502 upstream_unexpected_upgrade.
func TestUpgradeToOtherProtocol(t *testing.T) {
	url := scriptedUpstream(t, func(c net.Conn, _ *bufio.Reader, _ string) {
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")
		time.Sleep(100 * time.Millisecond)
	})
	g := startGateway(t, oneUpstream(url, upgradeRoute("10m")))
	res := get(t, g.base+"/ws", map[string]string{
		"Connection": "Upgrade", "Upgrade": "websocket", "X-Request-Id": "other-proto-1",
		"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13",
	})
	wantProblem(t, res, 502, "upstream_unexpected_upgrade", "h2c")
	rec := g.log.record(t, "other-proto-1")
	if d, _ := rec["failure.detail"].(string); !strings.Contains(d, "did not offer") {
		t.Fatalf("log record %v", rec)
	}
}

// TestUpgradeEarlyBytes: bytes that arrive with the heads (the client's
// first frame in the request's packet, the upstream's first bytes in the
// 101's) reach the other side; a half-close goes through, and the other
// direction goes on until the upstream closes.
func TestUpgradeEarlyBytes(t *testing.T) {
	heads := make(chan string, 1)
	url := scriptedUpstream(t, func(c net.Conn, br *bufio.Reader, head string) {
		heads <- head
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Accept: x\r\nX-Request-Id: spoofed\r\n\r\nHELLO")
		first := make([]byte, 5)
		if _, err := io.ReadFull(br, first); err != nil {
			return
		}
		io.WriteString(c, "got:"+string(first))
		rest, _ := io.ReadAll(br) // until the client's half-close
		io.WriteString(c, "bye"+string(rest))
	})
	g := startGateway(t, oneUpstream(url, upgradeRoute("10m")))
	c, err := net.Dial("tcp", g.st.GatewayAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// One write: the head and the first frame's bytes in one packet.
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-Request-Id: early-1\r\n\r\nFIRST")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "websocket" || resp.Header.Get("Connection") != "Upgrade" ||
		resp.Header.Get("Sec-Websocket-Accept") != "x" || resp.Header.Values("X-Request-Id")[0] != "early-1" ||
		len(resp.Header.Values("X-Request-Id")) != 1 {
		t.Fatalf("101 head: %d %v", resp.StatusCode, resp.Header)
	}
	got := make([]byte, len("HELLOgot:FIRST"))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "HELLOgot:FIRST" {
		t.Fatalf("tunnel bytes %q, %v", got, err)
	}
	head := <-heads
	for _, want := range []string{"GET /ws HTTP/1.1\r\n", "\r\nConnection: Upgrade\r\n", "\r\nUpgrade: websocket\r\n"} {
		if !strings.Contains(head, want) {
			t.Errorf("upstream head lacks %q:\n%s", want, head)
		}
	}
	if strings.Contains(head, "keep-alive") {
		t.Errorf("client's Connection forwarded:\n%s", head)
	}
	io.WriteString(c, "more")
	c.(*net.TCPConn).CloseWrite()
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "byemore" {
		t.Fatalf("after the half-close: %q, %v", rest, err)
	}
	rec := wantTunnelRecord(t, g, "early-1", "client_closed")
	if rec["tunnel.bytes_up"] != float64(len("FIRSTmore")) || rec["tunnel.bytes_down"] != float64(len("HELLOgot:FIRSTbyemore")) {
		t.Fatalf("tunnel bytes in %v", rec)
	}
}

// TestTunnelsReleaseSlots: a tunnel holds neither the upstream's
// concurrency slot nor its target's in-flight count once the 101 is
// relayed.
func TestTunnelsReleaseSlots(t *testing.T) {
	up := startWS(t, echoWS)
	g := startGateway(t, `listen: 127.0.0.1:0
log: {level: debug, access: true}
routes:
  - name: r
    upstream: u
`+upgradeRoute("10m")+`
upstreams:
  u:
    targets: [{url: "`+up.url+`"}]
    limits: {max_concurrent: 1}
`)
	c, _ := dialWS(t, g, "slot-1", "")
	roundTrip(t, c, websocket.MessageText, []byte("x"))
	if res := get(t, g.base+"/plain", nil); res.status != 200 || string(res.body) != "plain" {
		t.Fatalf("plain request beside a tunnel: %d %s", res.status, res.body)
	}
	tg := g.st.Generation().Upstreams["u"].Transport.Targets()[0]
	if n := tg.InFlight(); n != 0 {
		t.Fatalf("target in flight %d with only a tunnel open", n)
	}
}

// TestCloseTunnels: Swap leaves tunnels running; CloseTunnels closes only
// the matching ones, whose records say shutdown.
func TestCloseTunnels(t *testing.T) {
	ua, ub := startWS(t, echoWS), startWS(t, echoWS)
	g := startGateway(t, `listen: 127.0.0.1:0
log: {level: debug, access: true}
routes:
  - name: ws-a
    match: {host: a.test}
    upstream: ua
`+upgradeRoute("10m")+`
  - name: ws-b
    upstream: ub
`+upgradeRoute("10m")+`
upstreams:
  ua:
    targets: [{url: "`+ua.url+`"}]
  ub:
    targets: [{url: "`+ub.url+`"}]
`)
	h := g.st.Handler
	a1, _ := dialWS(t, g, "close-a1", "a.test")
	a2, _ := dialWS(t, g, "close-a2", "a.test")
	b1, _ := dialWS(t, g, "close-b1", "b.test")
	if n := h.Tunnels(); n != 3 {
		t.Fatalf("Tunnels() = %d, want 3", n)
	}

	old := h.Swap(&proxy.Table{Router: router.New(nil)})
	if res := get(t, g.base+"/", nil); res.status != 404 {
		t.Fatalf("after Swap: %d, want 404 from the empty table", res.status)
	}
	for _, c := range []*websocket.Conn{a1, a2, b1} {
		roundTrip(t, c, websocket.MessageText, []byte("still here"))
	}
	h.Swap(old)

	uaTransport := g.st.Generation().Upstreams["ua"].Transport
	n := h.CloseTunnels(func(route string, up *upstream.Transport) bool {
		return route == "ws-a" && up == uaTransport
	})
	if n != 2 {
		t.Fatalf("CloseTunnels closed %d, want 2", n)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for _, c := range []*websocket.Conn{a1, a2} {
		if _, _, err := c.Read(ctx); err == nil {
			t.Fatal("a closed tunnel still reads")
		}
	}
	roundTrip(t, b1, websocket.MessageBinary, []byte("b survives"))
	wantTunnelRecord(t, g, "close-a1", "shutdown")
	wantTunnelRecord(t, g, "close-a2", "shutdown")
	eventually(t, 5*time.Second, "one tunnel left", func() bool { return h.Tunnels() == 1 })
}
