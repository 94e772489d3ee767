package telemetry

import (
	"context"
	"net"
	"net/http"
	"net/netip"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"candor/internal/failure"
)

// TraceOptions configure a [Tracer]; see config.Tracing.
type TraceOptions struct {
	// Endpoint is the OTLP/HTTP collector's host:port; spans are POSTed
	// to http://Endpoint/v1/traces.
	Endpoint string
	// ServiceName is the service.name resource attribute. Default:
	// candor.
	ServiceName string
	// Sample is the fraction of new traces sampled, 0 to 1. A continued
	// trace follows its parent's sampled flag.
	Sample float64
	// Trust lists the client networks whose W3C traceparent is continued.
	Trust []netip.Prefix
	// Exporter replaces the OTLP/HTTP exporter (tests); nil exports to
	// Endpoint.
	Exporter sdktrace.SpanExporter
}

// Tracer makes candor's spans: a server span per request ([Tracer.Start])
// and a client span per upstream attempt ([Span.StartAttempt]), batched and
// exported over OTLP/HTTP. A nil *Tracer traces nothing, and every method
// of the nil *Span and *Attempt it hands out does nothing, so an untraced
// request costs a nil check.
//
// Start may be called from any goroutine at any time; a Span and its
// Attempts belong to the goroutine serving their request.
type Tracer struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	trust    []netip.Prefix
}

// NewTracer returns a Tracer exporting as opt says. Nothing is sent until
// a sampled span ends; the caller must [Tracer.Shutdown] it.
func NewTracer(opt TraceOptions) (*Tracer, error) {
	exp := opt.Exporter
	if exp == nil {
		var err error
		exp, err = otlptracehttp.New(context.Background(),
			otlptracehttp.WithEndpoint(opt.Endpoint),
			otlptracehttp.WithInsecure(),
		)
		if err != nil {
			return nil, err
		}
	}
	name := opt.ServiceName
	if name == "" {
		name = "candor"
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", name))),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(opt.Sample))),
	)
	return &Tracer{provider: tp, tracer: tp.Tracer("candor"), trust: opt.Trust}, nil
}

// Flush exports the spans that ended so far.
func (t *Tracer) Flush(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.ForceFlush(ctx)
}

// Shutdown exports the spans that ended so far, until ctx is done, and
// stops the exporter. Spans started later are not recorded.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}

// Trusted reports whether the client at remoteAddr (ip:port, as in
// [http.Request.RemoteAddr]) may continue its own trace.
func (t *Tracer) Trusted(remoteAddr string) bool {
	if t == nil || len(t.trust) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range t.trust {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Span is a request's server span ("candor.request"). A nil *Span is not
// traced.
type Span struct {
	ctx    context.Context
	tracer trace.Tracer
	span   trace.Span
}

// Start starts request r's server span. The W3C traceparent and tracestate
// of r (W3C Trace Context §3.2, §3.3) are continued only when the client
// is [Tracer.Trusted]; otherwise they are ignored and a new trace starts.
// Either way the caller must not forward the client's fields: the
// upstream gets the attempt's own ([Attempt.Fields]).
func (t *Tracer) Start(r *http.Request, requestID string) *Span {
	if t == nil {
		return nil
	}
	ctx := r.Context()
	if t.Trusted(r.RemoteAddr) {
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	ctx, span := t.tracer.Start(ctx, "candor.request",
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("url.path", r.URL.Path),
			attribute.String("server.address", host),
			attribute.String("candor.request_id", requestID),
		))
	return &Span{ctx: ctx, tracer: t.tracer, span: span}
}

// TraceID returns the span's trace id (32 hex digits) when the span is
// sampled, and "" otherwise: an unsampled trace is never exported, so
// there is nothing to look up.
func (s *Span) TraceID() string {
	if s == nil {
		return ""
	}
	sc := s.span.SpanContext()
	if !sc.IsSampled() {
		return ""
	}
	return sc.TraceID().String()
}

// End ends the span with the outcome in r: route, status, source and,
// for a failure, its cause and phase. A failure other than the client's
// own cancellation marks the span as an error.
func (s *Span) End(r *Record) {
	if s == nil {
		return
	}
	if s.span.IsRecording() {
		a := make([]attribute.KeyValue, 0, 8)
		a = append(a,
			attribute.Int("http.response.status_code", r.Status),
			attribute.String("candor.source", r.Source.String()),
		)
		if r.Route != "" {
			a = append(a, attribute.String("candor.route", r.Route))
		}
		if r.Upstream != "" {
			a = append(a, attribute.String("candor.upstream", r.Upstream), attribute.Int("candor.attempts", r.Attempts))
		}
		if r.Failed {
			a = append(a,
				attribute.String("candor.cause", r.Kind.String()),
				attribute.String("candor.phase", r.Phase.String()),
			)
			if r.Detail != "" {
				a = append(a, attribute.String("candor.detail", r.Detail))
			}
			if r.Kind != failure.ClientCanceled {
				s.span.SetStatus(codes.Error, r.Kind.String())
			}
		}
		s.span.SetAttributes(a...)
	}
	s.span.End()
}

// Attempt is one upstream attempt's client span ("candor.attempt"), a
// child of the request's span. A nil *Attempt is not traced.
type Attempt struct {
	span trace.Span
}

// StartAttempt starts the client span of attempt n (from 1) of the
// request to target (host:port) of upstream.
func (s *Span) StartAttempt(upstream, target string, n int) *Attempt {
	if s == nil {
		return nil
	}
	_, span := s.tracer.Start(s.ctx, "candor.attempt",
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("candor.upstream", upstream),
			attribute.String("candor.target", target),
			attribute.Int("candor.attempt", n),
		))
	return &Attempt{span: span}
}

// Fields returns the attempt's W3C trace context, to send upstream as
// the traceparent and tracestate fields (W3C Trace Context §3.2, §3.3):
// version 00, the trace id, the attempt's span id and its sampled flag.
// tracestate is "" when the trace has none (a new trace, or a trusted
// client that sent none).
func (a *Attempt) Fields() (traceparent, tracestate string) {
	if a == nil {
		return "", ""
	}
	sc := a.span.SpanContext()
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String(), sc.TraceState().String()
}

// End ends the attempt with its result: the upstream's status when there
// was a response head (status > 0), and fe's cause and phase when the
// attempt failed (which marks the span as an error).
func (a *Attempt) End(status int, fe *failure.Error) {
	if a == nil {
		return
	}
	if a.span.IsRecording() {
		if status > 0 {
			a.span.SetAttributes(attribute.Int("http.response.status_code", status))
		}
		if fe != nil {
			a.span.SetAttributes(
				attribute.String("candor.cause", fe.Kind.String()),
				attribute.String("candor.phase", fe.Phase.String()),
			)
			a.span.SetStatus(codes.Error, fe.Kind.String())
		}
	}
	a.span.End()
}
