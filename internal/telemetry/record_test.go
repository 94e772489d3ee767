package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"candor/internal/failure"
)

// logged writes r through a JSON handler and decodes the line.
func logged(t *testing.T, r *Record, level slog.Level) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	r.Log(context.Background(), l)
	if buf.Len() == 0 {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRecordFailure(t *testing.T) {
	fe := failure.Wrap(failure.MalformedHeader, `header line 2: no colon: "oops"`, errors.New("parse"))
	fe.Upstream, fe.Target, fe.Attempt, fe.BytesSent, fe.BytesReceived = "api", "10.0.0.7:8080", 1, 120, 40
	r := &Record{
		RequestID: "rid-1", Method: "GET", Host: "api.test", Path: "/v1/users", Route: "api",
		Status: 502, Source: SourceGateway, Total: 1500 * time.Microsecond, Connect: 200 * time.Microsecond,
	}
	r.SetFailure(fe)
	want := map[string]any{
		"level": "WARN", "msg": "upstream_malformed_header",
		"request_id": "rid-1", "method": "GET", "host": "api.test", "path": "/v1/users", "route": "api",
		"status": 502.0, "source": "gateway",
		"failure.kind": "upstream_malformed_header", "failure.phase": "read_head",
		"failure.detail": `header line 2: no colon: "oops"`, "failure.error": "parse",
		"upstream": "api", "target": "10.0.0.7:8080", "attempt": 1.0, "reused": false,
		"bytes_sent": 120.0, "bytes_received": 40.0, "bytes_out": 0.0,
		"duration_ms": 1.5, "dns_ms": 0.0, "connect_ms": 0.2, "tls_ms": 0.0, "first_byte_ms": 0.0,
	}
	if diff := cmp.Diff(want, logged(t, r, slog.LevelInfo)); diff != "" {
		t.Fatalf("record (-want +got):\n%s", diff)
	}
}

func TestRecordSuccessAndLevels(t *testing.T) {
	ok := &Record{RequestID: "rid-2", Method: "GET", Path: "/", Route: "r", Status: 200, Source: SourceUpstream}
	want := map[string]any{
		"level": "INFO", "msg": "request", "request_id": "rid-2", "method": "GET", "host": "",
		"path": "/", "route": "r", "status": 200.0, "source": "upstream", "bytes_out": 0.0, "duration_ms": 0.0,
	}
	if diff := cmp.Diff(want, logged(t, ok, slog.LevelInfo)); diff != "" {
		t.Fatalf("success record (-want +got):\n%s", diff)
	}
	// With the level at warn, successes cost nothing and are not logged.
	if m := logged(t, ok, slog.LevelWarn); m != nil {
		t.Fatalf("success logged at warn level: %v", m)
	}
	levels := []struct {
		kind failure.Kind
		want slog.Level
	}{
		{failure.InternalError, slog.LevelError},
		{failure.ConnectRefused, slog.LevelWarn},
		{failure.ClientCanceled, slog.LevelInfo},
	}
	for _, c := range levels {
		r := &Record{}
		r.SetFailure(failure.New(c.kind, ""))
		if r.Level() != c.want {
			t.Errorf("%s logged at %v, want %v", c.kind, r.Level(), c.want)
		}
	}
}

func TestRecordTunnel(t *testing.T) {
	r := &Record{
		RequestID: "rid-3", Method: "GET", Path: "/ws", Route: "r", Status: 101, Source: SourceUpstream,
		Total:  3 * time.Second,
		Tunnel: &Tunnel{Protocol: "websocket", Up: 10, Down: 20, Duration: 2 * time.Second, End: TunnelIdle},
	}
	want := map[string]any{
		"level": "INFO", "msg": "request", "request_id": "rid-3", "method": "GET", "host": "",
		"path": "/ws", "route": "r", "status": 101.0, "source": "upstream", "bytes_out": 0.0, "duration_ms": 3000.0,
		"tunnel.protocol": "websocket", "tunnel.end": "idle", "tunnel.bytes_up": 10.0, "tunnel.bytes_down": 20.0,
		"tunnel.duration_ms": 2000.0,
	}
	if diff := cmp.Diff(want, logged(t, r, slog.LevelInfo)); diff != "" {
		t.Fatalf("tunnel record (-want +got):\n%s", diff)
	}
	for e, s := range map[TunnelEnd]string{TunnelClientClosed: "client_closed", TunnelUpstreamClosed: "upstream_closed", TunnelIdle: "idle", TunnelShutdown: "shutdown"} {
		if e.String() != s {
			t.Errorf("%d.String() = %q, want %q", e, e.String(), s)
		}
	}
}

// TestLogInlinesGroup: Log passes the record as one group with an empty
// key, which must write exactly what the record's attributes passed one by
// one write, with the JSON and the text handler.
func TestLogInlinesGroup(t *testing.T) {
	fe := failure.Wrap(failure.MalformedHeader, "detail", errors.New("parse"))
	fe.Upstream, fe.Target = "api", "10.0.0.7:8080"
	r := &Record{RequestID: "rid-1", Method: "GET", Path: "/", Route: "api", Status: 502,
		Tries: []Try{{Attempt: 1, Target: "a", Cause: "x"}, {Attempt: 2, Target: "b", Status: 200}}}
	r.SetFailure(fe)
	noTime := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	for name, newHandler := range map[string]func(*bytes.Buffer) slog.Handler{
		"json": func(b *bytes.Buffer) slog.Handler {
			return slog.NewJSONHandler(b, &slog.HandlerOptions{ReplaceAttr: noTime})
		},
		"text": func(b *bytes.Buffer) slog.Handler {
			return slog.NewTextHandler(b, &slog.HandlerOptions{ReplaceAttr: noTime})
		},
	} {
		var got, want bytes.Buffer
		r.Log(context.Background(), slog.New(newHandler(&got)))
		slog.New(newHandler(&want)).LogAttrs(context.Background(), r.Level(), r.Kind.String(), r.Attrs()...)
		if got.String() != want.String() {
			t.Errorf("%s:\n got %s\nwant %s", name, got.String(), want.String())
		}
	}
}
