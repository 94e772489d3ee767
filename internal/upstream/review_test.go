package upstream

import (
	"crypto/tls"
	"io"
	"strings"
	"testing"

	"candor/internal/failure"
)

// TestTLSPooledConnWithDecryptedLeftovers: an https upstream sends a
// response and, in the same TLS record, the start of another one it was
// never asked for. tls.Conn holds those bytes decrypted, out of sight of
// bufio and of the socket probe; the connection must not be reused, or
// the next request would receive the smuggled response.
func TestTLSPooledConnWithDecryptedLeftovers(t *testing.T) {
	ca := newTestCA(t)
	body := strings.Repeat("x", 12000)
	evil := "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!"
	// Full-size records, so that the end of the body and the unasked-for
	// response share one record.
	srv := startServerTLS(t, &tls.Config{Certificates: []tls.Certificate{ca.leaf(t, "127.0.0.1")}, DynamicRecordSizingDisabled: true}, func(c *srvConn) {
		for {
			if _, err := c.readRequest(); err != nil {
				return
			}
			// One write: one TLS record carries both.
			if c.write("HTTP/1.1 200 OK\r\nContent-Length: 12000\r\n\r\n"+body+evil) != nil {
				return
			}
		}
	})
	opt := testOptions()
	opt.TLS = &tls.Config{RootCAs: ca.pool}
	tr, tg := newTestTransport(t, opt, srv.url)
	for i := range 3 {
		resp, err := tr.RoundTrip(t.Context(), tg, newRequest("GET"))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		// Read as the proxy does, with a 32 KiB buffer: reads that large
		// bypass bufio and leave the rest of the record inside tls.Conn.
		var got []byte
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("request %d body: %v", i, err)
			}
		}
		if resp.Status != 200 || string(got) != body {
			t.Fatalf("request %d got %d %q...; a smuggled response was reused", i, resp.Status, got[:min(len(got), 10)])
		}
	}
	if n := srv.accepts.Load(); n != 3 {
		t.Fatalf("%d connections for 3 requests; a poisoned connection was reused", n)
	}
}

// TestResetMidHead: a reset after part of the head arrived is a truncated
// head, not "reset before response" (which a retry could treat as a
// request that was never answered).
func TestResetMidHead(t *testing.T) {
	srv := startServer(t, func(c *srvConn) {
		if _, err := c.readRequest(); err != nil {
			return
		}
		c.write("HTTP/1.1 200 OK\r\nX-A: b\r\n")
		c.raw.SetLinger(0)
		c.raw.Close()
	})
	tr, tg := newTestTransport(t, testOptions(), srv.url)
	_, _, err := fetch(t.Context(), tr, tg, newRequest("GET"))
	fe := asFailure(t, err)
	if fe.Kind != failure.TruncatedHead || fe.BytesReceived == 0 {
		t.Fatalf("got %s with %d bytes received; want upstream_truncated_head", fe.Kind, fe.BytesReceived)
	}
}
