package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net/netip"
	"time"

	"candor/internal/failure"
)

// Probe walks one request to one target through the steps of an attempt one
// at a time, so that each step can be timed and reported on its own: it is
// what `candor diagnose` runs. Its steps use the same resolver, dialer, TLS
// configuration, request writer, strict response-head parser and body
// readers as [Transport.RoundTrip], on a fresh connection that is never
// pooled, and fail with a *failure.Error classified as RoundTrip classifies
// it. Unlike RoundTrip it never replays a request.
//
// Call the steps in order: [Probe.Resolve], [Probe.Connect],
// [Probe.Handshake] (a no-op for http targets), [Probe.Send],
// [Probe.ReadHead], then read and close the response's Body. After a step
// fails the connection is closed and no later step may be called. Close
// releases the probe at any point. ConnectTimeout bounds Resolve, Connect
// and Handshake together, from the start of Resolve, as it bounds a dial.
// A Probe is not safe for concurrent use.
type Probe struct {
	t     *Transport
	tg    *Target
	start time.Time
	// deadline bounds Resolve, Connect and Handshake together.
	deadline time.Time
	c        *conn
	a        *attempt
	// early is a response that arrived while the request was being
	// written and the write failed (an upstream's early 413, say).
	early *Response
}

// NewProbe returns a Probe of targetURL (http or https, host and optional
// port, as a [Transport] target) under opt. MaxIdlePerTarget and PoolIdle
// are ignored: a probe's connection is never pooled.
func NewProbe(opt Options, targetURL string) (*Probe, error) {
	opt.MaxIdlePerTarget, opt.PoolIdle = 0, 0
	t, err := New(opt, []string{targetURL})
	if err != nil {
		return nil, err
	}
	return &Probe{t: t, tg: t.targets[0]}, nil
}

// Target returns the probed target.
func (p *Probe) Target() *Target { return p.tg }

// IPLiteral returns the target's address when its host is an IP literal,
// which needs no DNS.
func (p *Probe) IPLiteral() (netip.Addr, bool) { return p.tg.ip, p.tg.ip.IsValid() }

// Host returns the target's host: a name or an IP literal, without port.
func (p *Probe) Host() string { return p.tg.host }

// Port returns the target's port.
func (p *Probe) Port() uint16 { return p.tg.port }

// TLS reports whether the target is https.
func (p *Probe) TLS() bool { return p.tg.tls != nil }

// ServerName returns the name the target's certificate is verified
// against (and sent as SNI), or "" for an http target.
func (p *Probe) ServerName() string {
	if p.tg.tls == nil {
		return ""
	}
	return p.tg.tls.ServerName
}

// begin starts the connect budget on the first step.
func (p *Probe) begin() {
	if p.start.IsZero() {
		p.start = time.Now()
		p.deadline = p.start.Add(p.t.opt.ConnectTimeout)
	}
}

// fail records where a failure of phase ph happened, as a dial does.
func (p *Probe) fail(ctx context.Context, ph failure.Phase, err error) *failure.Error {
	fe := failure.Classify(ctx, ph, err)
	fe.Upstream = p.t.opt.Name
	fe.Target = p.tg.Addr
	fe.Attempt = 1
	return fe
}

// Resolve looks up the target's host with the upstream's resolver (the
// system's when Options.Resolver is empty). For an IP literal it returns
// that address without a lookup.
func (p *Probe) Resolve(ctx context.Context) ([]netip.Addr, error) {
	p.begin()
	dctx, cancel := context.WithDeadline(ctx, p.deadline)
	defer cancel()
	ips, err := p.t.resolve(dctx, p.tg, nil)
	if err != nil {
		return nil, p.fail(ctx, failure.PhaseDNS, err)
	}
	return ips, nil
}

// Connect opens a TCP connection to the target's port on the first of ips
// that accepts, in order, as a dial does, and returns the address
// connected to.
func (p *Probe) Connect(ctx context.Context, ips []netip.Addr) (netip.AddrPort, error) {
	p.begin()
	if len(ips) == 0 {
		return netip.AddrPort{}, errors.New("upstream: Connect needs an address")
	}
	dctx, cancel := context.WithDeadline(ctx, p.deadline)
	defer cancel()
	nc, ap, err := dialFirst(dctx, ips, p.tg.port)
	if err != nil {
		return ap, p.fail(ctx, failure.PhaseConnect, err)
	}
	p.c = &conn{raw: nc, nc: nc}
	return ap, nil
}

// Handshake completes the TLS handshake of an https target, verifying its
// certificate chain and name, and returns the connection's state. For an
// http target it does nothing and returns nil, nil. On a failed
// verification the error's chain holds a *tls.CertificateVerificationError
// with the certificates the target presented.
func (p *Probe) Handshake(ctx context.Context) (*tls.ConnectionState, error) {
	if p.tg.tls == nil {
		return nil, nil
	}
	if p.c == nil {
		return nil, errors.New("upstream: Handshake before Connect")
	}
	dctx, cancel := context.WithDeadline(ctx, p.deadline)
	defer cancel()
	tc, err := handshake(dctx, p.c.nc, p.tg.tls)
	if err != nil {
		return nil, p.fail(ctx, failure.PhaseTLS, err)
	}
	p.c.nc = tc
	st := tc.ConnectionState()
	return &st, nil
}

// Send writes req on the connection. The request's Attempt is set to 1.
func (p *Probe) Send(ctx context.Context, req *Request) error {
	if p.c == nil || p.a != nil {
		return errors.New("upstream: Send before Connect, or twice")
	}
	c := p.c
	c.br = bufio.NewReaderSize(c, 4096)
	c.bw = bufio.NewWriterSize(c, 4096)
	req.Attempt = 1
	a := &attempt{t: p.t, tg: p.tg, ctx: ctx, req: req, start: p.start}
	p.a = a
	c.uses++
	c.ctx = ctx
	a.stop = context.AfterFunc(ctx, func() { c.nc.SetDeadline(aLongTimeAgo) })
	if err := p.t.write(a, c); err != nil {
		fe := failure.Classify(ctx, failure.PhaseWrite, err)
		if resp, ok := p.t.earlyResponse(a, c); ok && fe.Kind != failure.ClientBodyInvalid && fe.Kind != failure.ClientCanceled {
			p.early = resp
			return nil
		}
		a.fill(fe, c)
		a.end()
		c.close()
		return fe
	}
	return nil
}

// ReadHead waits for the response head (within the request's
// HeaderTimeout, or the upstream's ResponseHeaderTimeout) and parses it
// strictly. On success the caller owns resp.Body.
func (p *Probe) ReadHead(ctx context.Context) (*Response, error) {
	if p.a == nil {
		return nil, errors.New("upstream: ReadHead before Send")
	}
	if p.early != nil {
		resp := p.early
		p.early = nil
		return resp, nil
	}
	resp, err := p.t.readResponse(p.a, p.c)
	if err != nil {
		fe := failure.Classify(ctx, failure.PhaseReadHead, err)
		p.a.fill(fe, p.c)
		p.a.end()
		p.c.close()
		return nil, fe
	}
	return resp, nil
}

// Close closes the probe's connection, if any, and releases the probe. A
// response body read afterwards fails.
func (p *Probe) Close() {
	if p.a != nil {
		p.a.end()
	}
	if p.c != nil {
		p.c.nc.Close()
		p.c.raw.Close()
	}
	p.t.Close()
}
