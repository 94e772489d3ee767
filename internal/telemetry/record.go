// Package telemetry holds candor's observability types: the access-log
// record written once per request and the request's trace spans
// ([Tracer]), with label values taken from the cause table
// ([failure.Kind]).
package telemetry

import (
	"context"
	"log/slog"
	"time"

	"candor/internal/failure"
)

// Source says who produced the status a client got: candor itself
// ("gateway") or the upstream ("upstream"). Dashboards use it to separate
// candor's own 502 from an upstream's 502.
type Source uint8

// The sources.
const (
	SourceGateway Source = iota
	SourceUpstream
)

// String returns "gateway" or "upstream".
func (s Source) String() string {
	if s == SourceUpstream {
		return "upstream"
	}
	return "gateway"
}

// Record is one request's access-log record. The zero Kind with a
// SourceUpstream status means no failure.
type Record struct {
	Time      time.Time
	RequestID string
	// TraceID is the request's trace id (32 hex digits) when the request
	// is traced and sampled, otherwise "".
	TraceID string
	Method  string
	Host    string
	// Peer is the address (ip:port) of the connection the request came
	// on: the client's own, or the last proxy's. Forwarding fields
	// (X-Forwarded-For, Forwarded) never change it.
	Peer string
	// Path is the request path without its query, which may carry secrets.
	Path   string
	Route  string
	Status int
	Source Source
	// Failed reports a gateway-generated outcome or a body fault after
	// the status was sent; Kind and Phase are set only then.
	Failed bool
	Kind   failure.Kind
	Phase  failure.Phase
	// Detail is the validation detail: which rule broke, quoted bytes.
	Detail string
	// Err is the underlying error text (logs only).
	Err string
	// Aborted reports that the response was cut off after its status was
	// sent, so that the client saw a broken response.
	Aborted  bool
	Upstream string
	Target   string
	Attempts int
	// Tries lists every attempt when there was more than one.
	Tries []Try
	// BudgetExhausted reports that a safe retry was refused by the retry
	// budget.
	BudgetExhausted bool
	Reused          bool
	BytesSent       int64 // to the upstream
	BytesReceived   int64 // from the upstream
	BytesOut        int64 // body bytes to the client
	Total           time.Duration
	// Phases of the last attempt, as offsets from its start; zero when the
	// phase did not happen.
	DNS, Connect, TLS, FirstByte time.Duration
	// Tunnel is set when the request switched protocols (status 101) and
	// its connection was relayed as a tunnel; the record is then written
	// when the tunnel ends, and Total includes the tunnel's life.
	Tunnel *Tunnel
}

// Tunnel describes an upgraded connection (RFC 9110 §7.8) relayed after a
// 101.
type Tunnel struct {
	// Protocol is the protocol switched to (the 101's Upgrade).
	Protocol string
	// Up and Down count the bytes relayed after the 101: client to
	// upstream and upstream to client.
	Up, Down int64
	// Duration is the tunnel's life, from the 101 to its end.
	Duration time.Duration
	// End says what ended it.
	End TunnelEnd
}

// TunnelEnd says what ended a tunnel: the first of its two sides to close,
// or candor.
type TunnelEnd uint8

// The ends of a tunnel.
const (
	// TunnelClientClosed: the client closed (or reset) its connection, or
	// stopped taking bytes.
	TunnelClientClosed TunnelEnd = iota
	// TunnelUpstreamClosed: the upstream did.
	TunnelUpstreamClosed
	// TunnelIdle: no byte went either way for the route's upgrade.idle.
	TunnelIdle
	// TunnelShutdown: candor closed it (shutdown, or a reload that changed
	// its route's upstream).
	TunnelShutdown
)

// String returns the end's log value: client_closed, upstream_closed, idle
// or shutdown.
func (e TunnelEnd) String() string {
	switch e {
	case TunnelUpstreamClosed:
		return "upstream_closed"
	case TunnelIdle:
		return "idle"
	case TunnelShutdown:
		return "shutdown"
	}
	return "client_closed"
}

// Try is one attempt of a request: its target and either the upstream's
// status or the cause of its failure.
type Try struct {
	Attempt int    `json:"attempt"`
	Target  string `json:"target"`
	Status  int    `json:"status,omitempty"`
	Cause   string `json:"cause,omitempty"`
}

// SetFailure records fe on r.
func (r *Record) SetFailure(fe *failure.Error) {
	r.Failed = true
	r.Kind = fe.Kind
	r.Phase = fe.Phase
	r.Detail = fe.Detail
	if fe.Err != nil {
		r.Err = fe.Err.Error()
	}
	if fe.Upstream != "" {
		r.Upstream = fe.Upstream
		r.Target = fe.Target
	}
	if fe.Attempt > r.Attempts {
		r.Attempts = fe.Attempt
	}
	r.Reused = fe.Reused
	r.BytesSent += fe.BytesSent
	r.BytesReceived += fe.BytesReceived
}

// Level is the level the record is logged at: error for candor's own
// failures, warn for upstream faults, info otherwise.
func (r *Record) Level() slog.Level {
	switch {
	case !r.Failed, r.Kind == failure.ClientCanceled:
		return slog.LevelInfo
	case r.Kind == failure.InternalError:
		return slog.LevelError
	}
	return slog.LevelWarn
}

// Attrs returns the record as slog attributes with candor's fixed keys.
func (r *Record) Attrs() []slog.Attr {
	a := make([]slog.Attr, 0, 24)
	a = append(a, slog.String("request_id", r.RequestID))
	if r.TraceID != "" {
		a = append(a, slog.String("trace_id", r.TraceID))
	}
	a = append(a,
		slog.String("method", r.Method),
		slog.String("host", r.Host),
		slog.String("path", r.Path),
	)
	if r.Peer != "" {
		a = append(a, slog.String("peer", r.Peer))
	}
	a = append(a,
		slog.String("route", r.Route),
		slog.Int("status", r.Status),
		slog.String("source", r.Source.String()),
	)
	if r.Failed {
		a = append(a,
			slog.String("failure.kind", r.Kind.String()),
			slog.String("failure.phase", r.Phase.String()),
		)
		if r.Detail != "" {
			a = append(a, slog.String("failure.detail", r.Detail))
		}
		if r.Err != "" {
			a = append(a, slog.String("failure.error", r.Err))
		}
	}
	if len(r.Tries) > 1 {
		a = append(a, slog.Any("tries", r.Tries))
	}
	if r.BudgetExhausted {
		a = append(a, slog.Bool("retry_budget_exhausted", true))
	}
	if r.Aborted {
		a = append(a, slog.Bool("aborted", true))
	}
	if r.Upstream != "" {
		a = append(a,
			slog.String("upstream", r.Upstream),
			slog.String("target", r.Target),
			slog.Int("attempt", r.Attempts),
			slog.Bool("reused", r.Reused),
			slog.Int64("bytes_sent", r.BytesSent),
			slog.Int64("bytes_received", r.BytesReceived),
		)
	}
	a = append(a,
		slog.Int64("bytes_out", r.BytesOut),
		slog.Float64("duration_ms", ms(r.Total)),
	)
	if t := r.Tunnel; t != nil {
		a = append(a,
			slog.String("tunnel.protocol", t.Protocol),
			slog.String("tunnel.end", t.End.String()),
			slog.Int64("tunnel.bytes_up", t.Up),
			slog.Int64("tunnel.bytes_down", t.Down),
			slog.Float64("tunnel.duration_ms", ms(t.Duration)),
		)
	}
	if r.Upstream != "" {
		a = append(a,
			slog.Float64("dns_ms", ms(r.DNS)),
			slog.Float64("connect_ms", ms(r.Connect)),
			slog.Float64("tls_ms", ms(r.TLS)),
			slog.Float64("first_byte_ms", ms(r.FirstByte)),
		)
	}
	return a
}

// LogValue implements slog.LogValuer.
func (r *Record) LogValue() slog.Value { return slog.GroupValue(r.Attrs()...) }

// Log writes r to l at r's level, if that level is enabled. The message is
// "request" for successes and the cause id for failures.
func (r *Record) Log(ctx context.Context, l *slog.Logger) {
	lvl := r.Level()
	if !l.Enabled(ctx, lvl) {
		return
	}
	msg := "request"
	if r.Failed {
		msg = r.Kind.String()
	}
	// One attribute, a group with an empty key, which handlers inline
	// (see slog.Handler): the record's attributes are then not copied
	// into a slice of the slog.Record's own.
	l.LogAttrs(ctx, lvl, msg, slog.Attr{Value: slog.GroupValue(r.Attrs()...)})
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
