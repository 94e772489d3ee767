package reload

import (
	"fmt"
	"net/netip"
	"slices"

	"candor/internal/config"
	"candor/internal/telemetry"
)

// newTracer returns the tracer for cfg.Tracing, or nil when tracing is not
// configured. Tracing is process-wide and set up once, at [Start]: a
// reload that changes the tracing section is applied otherwise, but its
// tracing takes effect at the next restart (see [tracingChanged]).
func newTracer(cfg *config.Config) (*telemetry.Tracer, error) {
	t := cfg.Tracing
	if t == nil {
		return nil, nil
	}
	opt := telemetry.TraceOptions{Endpoint: t.OTLPEndpoint, ServiceName: t.ServiceName, Sample: 1}
	if t.Sample != nil {
		opt.Sample = *t.Sample
	}
	for _, s := range t.TrustTraceparent {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s: tracing.trust_traceparent: %w", cfg.File, err)
		}
		opt.Trust = append(opt.Trust, p)
	}
	return telemetry.NewTracer(opt)
}

// tracingChanged reports whether a reload from prev to next changes the
// tracing section, which only a restart applies.
func tracingChanged(prev, next *config.Tracing) bool {
	if prev == nil || next == nil {
		return prev != next
	}
	return prev.OTLPEndpoint != next.OTLPEndpoint || prev.ServiceName != next.ServiceName ||
		!equalSample(prev.Sample, next.Sample) || !slices.Equal(prev.TrustTraceparent, next.TrustTraceparent)
}

func equalSample(a, b *float64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
