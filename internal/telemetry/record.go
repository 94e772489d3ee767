// Package telemetry holds candor's observability types: the access-log
// record written once per request, with label values taken from the cause
// table ([failure.Kind]).
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
	Method    string
	Host      string
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
	a = append(a,
		slog.String("request_id", r.RequestID),
		slog.String("method", r.Method),
		slog.String("host", r.Host),
		slog.String("path", r.Path),
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
	l.LogAttrs(ctx, lvl, msg, r.Attrs()...)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
