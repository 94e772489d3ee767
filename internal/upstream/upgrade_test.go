package upstream

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"candor/internal/failure"
)

// upgradeRequest is a WebSocket handshake request as the proxy hands it to
// the transport: the client's header still carries its own Connection and
// Upgrade, which must not be forwarded as they are.
func upgradeRequest() *Request {
	req := newRequest("GET")
	req.Header = http.Header{
		"Connection":            {"keep-alive, Upgrade"},
		"Upgrade":               {"websocket, h2c"},
		"Sec-Websocket-Key":     {"dGhlIHNhbXBsZSBub25jZQ=="},
		"Sec-Websocket-Version": {"13"},
	}
	req.Upgrade = "websocket"
	return req
}

const switching = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"

// TestUpgradeHijack: a 101 to the offered protocol hands the connection
// over with the bytes that came with the head; the request's context no
// longer touches it, and it never returns to the pool.
func TestUpgradeHijack(t *testing.T) {
	srv := startServer(t, func(c *srvConn) {
		if _, err := c.readRequest(); err != nil {
			return
		}
		// The head and the first bytes of the new protocol in one write.
		if c.write(switching+"hello") != nil {
			return
		}
		io.Copy(c.nc, c.br) // echo
	})
	tr, tg := newTestTransport(t, testOptions(), srv.url)
	ctx, cancel := context.WithCancel(t.Context())
	resp, err := tr.RoundTrip(ctx, tg, upgradeRequest())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 101 || resp.Upgrade != "websocket" {
		t.Fatalf("status %d upgrade %q", resp.Status, resp.Upgrade)
	}
	if len(resp.Fields) != 1 || resp.Fields[0].Name != "Sec-WebSocket-Accept" {
		t.Fatalf("fields %v", resp.Fields)
	}
	nc, br, err := resp.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, _, err := resp.Hijack(); err == nil {
		t.Fatal("a second Hijack succeeded")
	}
	cancel() // must not poison the hijacked connection
	time.Sleep(10 * time.Millisecond)
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 5)
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "hello" {
		t.Fatalf("buffered bytes %q, %v", got, err)
	}
	if _, err := io.WriteString(nc, "ping"); err != nil {
		t.Fatal(err)
	}
	got = make([]byte, 4)
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "ping" {
		t.Fatalf("echo %q, %v", got, err)
	}
	if n := tg.IdleConns(); n != 0 {
		t.Fatalf("%d idle connections after an upgrade", n)
	}
	sent, recv := resp.Body.Wire()
	if sent == 0 || recv < int64(len(switching)) {
		t.Fatalf("wire counts %d/%d", sent, recv)
	}

	raw := string(srv.received()[0])
	for _, want := range []string{"\r\nConnection: Upgrade\r\n", "\r\nUpgrade: websocket\r\n", "\r\nSec-Websocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"} {
		if !strings.Contains(raw, want) {
			t.Errorf("request lacks %q:\n%s", want, raw)
		}
	}
	for _, bad := range []string{"h2c", "keep-alive"} {
		if strings.Contains(raw, bad) {
			t.Errorf("request forwards the client's %q:\n%s", bad, raw)
		}
	}
}

// TestUpgradeDeclined: an upstream that answers an upgrade request with an
// ordinary response is passed on as one; its connection is not pooled.
// Hijack refuses it.
func TestUpgradeDeclined(t *testing.T) {
	srv := startServer(t, keepAlive)
	tr, tg := newTestTransport(t, testOptions(), srv.url)
	resp, err := tr.RoundTrip(t.Context(), tg, upgradeRequest())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := resp.Hijack(); err == nil {
		t.Fatal("Hijack of a 200 succeeded")
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "ok" || resp.Upgrade != "" {
		t.Fatalf("body %q err %v upgrade %q", body, err, resp.Upgrade)
	}
	if n := tg.IdleConns(); n != 0 {
		t.Fatalf("%d idle connections after a declined upgrade", n)
	}
}

// TestUpgradeFreshConnection: an upgrade never rides a pooled connection,
// and is not replayed when its fresh one fails.
func TestUpgradeFreshConnection(t *testing.T) {
	srv := startServer(t, func(c *srvConn) {
		for {
			raw, err := c.readRequest()
			if err != nil {
				return
			}
			if bytes.Contains(raw, []byte("Upgrade: websocket")) {
				return // close without answering
			}
			if c.write(okResponse) != nil {
				return
			}
		}
	})
	tr, tg := newTestTransport(t, testOptions(), srv.url)
	if _, _, err := fetch(t.Context(), tr, tg, newRequest("GET")); err != nil {
		t.Fatal(err)
	}
	if tg.IdleConns() != 1 {
		t.Fatalf("idle %d, want 1", tg.IdleConns())
	}
	_, err := tr.RoundTrip(t.Context(), tg, upgradeRequest())
	if fe := asFailure(t, err); fe.Kind != failure.ClosedBeforeResponse || fe.Reused {
		t.Fatalf("got %v (reused %v), want closed_before_response on a fresh connection", fe.Kind, fe.Reused)
	}
	if got := srv.accepts.Load(); got != 2 {
		t.Fatalf("%d connections, want 2 (the upgrade on its own)", got)
	}
	if got := srv.requests.Load(); got != 2 {
		t.Fatalf("%d requests, want 2 (no replay of the upgrade)", got)
	}
	if tg.IdleConns() != 1 {
		t.Fatalf("the pooled connection was used: idle %d", tg.IdleConns())
	}
}

// TestUpgradeRejects101: a 101 to a protocol that was not offered, or to a
// request without Upgrade, is a 502 upstream_unexpected_upgrade.
func TestUpgradeRejects101(t *testing.T) {
	for _, tc := range []struct {
		name    string
		upgrade string
		detail  string
	}{
		{"not offered", "h2c", "did not offer"},
		{"no upgrade requested", "", "without Upgrade"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, func(c *srvConn) {
				if _, err := c.readRequest(); err == nil {
					c.write(switching)
					c.hold()
				}
			})
			tr, tg := newTestTransport(t, testOptions(), srv.url)
			req := upgradeRequest()
			req.Upgrade = tc.upgrade
			_, err := tr.RoundTrip(t.Context(), tg, req)
			fe := asFailure(t, err)
			if fe.Kind != failure.UnexpectedUpgrade || !strings.Contains(fe.Detail, tc.detail) {
				t.Fatalf("got %v %q", fe.Kind, fe.Detail)
			}
			if tc.upgrade == "" && strings.Contains(string(srv.received()[0]), "Upgrade") {
				t.Fatalf("Upgrade forwarded without req.Upgrade:\n%s", srv.received()[0])
			}
		})
	}
}
