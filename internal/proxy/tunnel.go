package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"candor/internal/failure"
	"candor/internal/telemetry"
	"candor/internal/upstream"
)

// Upgrade is a route's policy for protocol upgrades (RFC 9110 §7.8), such
// as WebSocket (RFC 6455): which protocols may be switched to, and how long
// the resulting tunnel may stay idle.
//
// An upgrade request (HTTP/1.1 GET without a body, whose Connection has the
// "upgrade" option and which carries Upgrade) offering an allowed protocol
// is sent upstream with Upgrade limited to the allowed protocols, in one
// attempt on a fresh connection, never retried. A 101 to one of them turns
// the client's and the upstream's connections into a tunnel; any other
// valid answer (200, 400, 426...) is passed on as an ordinary response. An
// upgrade request on a route without Upgrade, or offering only protocols
// the route does not allow, is forwarded as a plain request: its
// Connection and Upgrade are hop-by-hop and are not forwarded, so the
// upstream sees a plain GET (and an upstream that answers it with a 101
// anyway gets a 502 upstream_unexpected_upgrade).
type Upgrade struct {
	// Protocols are the protocol names allowed in Upgrade, compared
	// case-insensitively, e.g. "websocket".
	Protocols []string
	// Idle closes a tunnel after this long without a byte read in either
	// direction (config default 10m); 0 means never.
	Idle time.Duration
}

// offered returns the protocols of r's Upgrade that u allows, joined for
// an upstream request, or "" when r is not an upgrade request or offers
// none of them.
func (u *Upgrade) offered(r *http.Request) string {
	if u == nil || r.Method != http.MethodGet || r.ProtoMajor != 1 || r.ProtoMinor != 1 ||
		r.ContentLength != 0 || !hasToken(r.Header["Connection"], "upgrade") {
		return ""
	}
	var out []string
	for _, v := range r.Header["Upgrade"] {
		for tok := range strings.SplitSeq(v, ",") {
			tok = strings.Trim(tok, " \t")
			// protocol = protocol-name ["/" protocol-version], both tokens.
			name, version, hasVersion := strings.Cut(tok, "/")
			if !isToken(name) || hasVersion && !isToken(version) {
				continue
			}
			if strings.EqualFold(name, "h2c") {
				// Never relayed, whatever the route allows: the upstream
				// would switch to HTTP/2 on a connection candor
				// forwards as HTTP/1.1 (the configuration refuses it
				// in upgrade.protocols too).
				continue
			}
			if slices.ContainsFunc(u.Protocols, func(p string) bool { return strings.EqualFold(p, name) }) {
				out = append(out, tok)
			}
		}
	}
	return strings.Join(out, ", ")
}

// hasToken reports whether the comma-separated values hold token,
// case-insensitively (RFC 9110 §5.6.1, §7.6.1).
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.Trim(tok, " \t"), token) {
				return true
			}
		}
	}
	return false
}

// isToken reports whether s is a token (RFC 9110 §5.6.2).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// tunnel sends an upgrade request offering protocols and relays the
// answer: a 101 becomes a tunnel, anything else is an ordinary response.
//
// The route's concurrency slot (Limiter) and the target's in-flight count
// are held until the 101 has been relayed, not for the tunnel's life:
// tunnels are long-lived and mostly idle, and counting them would let a
// few hundred open WebSockets starve the upstream's ordinary requests. A
// tunnel's own resources are its two connections and two goroutines.
func (h *Handler) tunnel(x *exchange, rt *Route, protocols string) {
	r := x.r
	ctx := r.Context()
	req := x.outbound()
	req.Upgrade = protocols
	req.Replayable = false
	// Registered before the upstream is asked, so that a CloseTunnels
	// during the handshake (a reload) is not missed.
	t := h.tunnels.open(rt.Name, rt.Upstream, rt.Upgrade.Idle)
	defer h.tunnels.remove(t)
	if !rt.Limiter.Acquire(ctx) {
		if ctx.Err() != nil {
			h.fail(x, failure.Wrap(failure.ClientCanceled, "waiting for an upstream slot", ctx.Err()))
		} else {
			h.fail(x, h.selectError(failure.Overloaded, rt))
		}
		return
	}
	// The route as attempts sees it, cut to one attempt: an upgrade is
	// never retried. (Route holds an atomic, so it is rebuilt, not copied.)
	one := &Route{Name: rt.Name, Upstream: rt.Upstream, Picker: rt.Picker, Retry: rt.Retry, Health: rt.Health, Key: rt.Key}
	one.Retry.Attempts = 1
	resp, tg := h.attempts(x, one, req)
	if resp == nil {
		rt.Limiter.Release()
		return
	}
	x.rec.Target = tg.Addr
	x.rec.Reused = resp.Reused
	x.rec.DNS, x.rec.Connect, x.rec.TLS, x.rec.FirstByte = resp.Timing.DNS, resp.Timing.Connect, resp.Timing.TLS, resp.Timing.FirstByte
	free := sync.OnceFunc(func() {
		tg.Release()
		rt.Limiter.Release()
	})
	defer free()
	if resp.Status != http.StatusSwitchingProtocols {
		// The upstream did not agree to switch: an ordinary response.
		x.body = resp.Body
		if rt.Strict != nil {
			h.buffered(x, rt.Strict, resp)
		} else {
			h.stream(x, resp)
		}
		rt.report(tg, resp)
		return
	}
	if rt.Health != nil {
		rt.Health.Report(tg, nil, resp.Status)
	}
	h.relay(x, t, resp, free)
}

// relay takes over both connections of a 101, sends the client the 101
// head, calls free, and copies bytes both ways until the tunnel ends. The
// request's log record, written when ServeHTTP returns, is the tunnel's.
//
// Each direction has its own goroutine: the request's, and one more. That
// departs from DESIGN §7 (no per-request goroutines) on purpose: tunnels
// are rare and long-lived, and blocking reads on both connections are the
// simplest correct relay.
func (h *Handler) relay(x *exchange, t *tunnel, resp *upstream.Response, free func()) {
	x.rec.Status = http.StatusSwitchingProtocols
	x.rec.Source = telemetry.SourceUpstream
	up, upr, err := resp.Hijack()
	if err != nil {
		h.fail(x, asFailure(x.r.Context(), err))
		return
	}
	x.rec.BytesSent, x.rec.BytesReceived = resp.Body.Wire()
	upPending := drain(upr)
	// net/http only: HTTP/2 requests never get here (offered requires
	// HTTP/1.1), and a server without Hijack is candor's own fault.
	cc, crw, err := http.NewResponseController(x.w).Hijack()
	if err != nil {
		up.Close()
		h.fail(x, failure.Wrap(failure.InternalError, "taking over the client connection after a 101", err))
		return
	}
	x.wroteHeader = true
	clientPending := drain(crw.Reader)
	doomed := !t.attach(cc, up)
	defer t.finish(telemetry.TunnelShutdown) // after a panic too; the first end stands
	stats := &telemetry.Tunnel{Protocol: resp.Upgrade}
	x.rec.Tunnel = stats
	start := time.Now()
	t.last.Store(start.UnixNano())
	// The 101's head, then what the upstream sent after it, in order; the
	// client's early bytes go upstream first thing in the other direction.
	if !t.write(cc, switchingHead(resp, x.id), nil, telemetry.TunnelClientClosed) {
		doomed = true
	}
	free()
	if doomed {
		t.finish(telemetry.TunnelShutdown)
	} else {
		bufDown := h.bufs.Get().(*[]byte)
		bufUp := h.bufs.Get().(*[]byte)
		done := make(chan struct{})
		go func() {
			defer close(done)
			t.pipe(cc, up, upPending, *bufDown, &stats.Down, telemetry.TunnelUpstreamClosed, telemetry.TunnelClientClosed)
		}()
		t.pipe(up, cc, clientPending, *bufUp, &stats.Up, telemetry.TunnelClientClosed, telemetry.TunnelUpstreamClosed)
		<-done
		h.bufs.Put(bufDown)
		h.bufs.Put(bufUp)
		t.finish(telemetry.TunnelClientClosed) // both sides are done; the first end stands
	}
	stats.Duration = time.Since(start)
	stats.End = t.ended()
	x.rec.BytesSent += stats.Up
	x.rec.BytesReceived += stats.Down
	x.rec.BytesOut = stats.Down
}

// drain returns a copy of the bytes br holds: bytes of the new protocol
// that arrived with the head.
func drain(br *bufio.Reader) []byte {
	if br == nil || br.Buffered() == 0 {
		return nil
	}
	b, _ := br.Peek(br.Buffered())
	return slices.Clone(b)
}

// switchingHead is the 101 sent to the client: the upstream's Upgrade,
// Connection: Upgrade, the upstream's end-to-end fields (Sec-WebSocket-*
// among them) and candor's request id.
func switchingHead(resp *upstream.Response, id string) []byte {
	b := make([]byte, 0, 256)
	b = append(b, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: "...)
	b = append(b, resp.Upgrade...)
	b = append(b, "\r\nConnection: Upgrade\r\n"...)
	for _, f := range resp.Fields {
		if strings.EqualFold(f.Name, "X-Request-Id") {
			continue
		}
		b = append(b, f.Name...)
		b = append(b, ": "...)
		b = append(b, f.Value...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "X-Request-Id: "...)
	b = append(b, id...)
	b = append(b, "\r\n\r\n"...)
	return b
}

// halfClosedIdle bounds the silence of a tunnel's remaining direction once
// the other has ended (a FIN, passed on with CloseWrite): the rest of a
// reply may still flow, but a peer that neither sends nor closes does not
// hold the tunnel for the whole upgrade.idle.
const halfClosedIdle = 5 * time.Second

// tunnel is one upgraded connection pair, from the upgrade request to the
// end of the relay. Its two pipes run on the request's goroutine and one
// more; CloseTunnels may call shut from any goroutine.
type tunnel struct {
	route string
	up    *upstream.Transport
	idle  time.Duration
	// last is when a byte was last read either way (Unix nanoseconds).
	last atomic.Int64

	mu     sync.Mutex
	client net.Conn // nil until attached
	target net.Conn
	doomed bool  // shut before it was attached
	halfAt int64 // when the first direction ended (Unix nanoseconds), or 0
	endSet bool
	end    telemetry.TunnelEnd
}

// attach records the tunnel's connections; false means CloseTunnels
// already chose it.
func (t *tunnel) attach(client, target net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.client, t.target = client, target
	return !t.doomed
}

// established reports whether the tunnel has its connections.
func (t *tunnel) established() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.client != nil && !t.doomed
}

// shut closes the tunnel on candor's behalf, or dooms it if its
// connections are not attached yet.
func (t *tunnel) shut() {
	t.mu.Lock()
	t.doomed = true
	t.mu.Unlock()
	t.finish(telemetry.TunnelShutdown)
}

// setEnd records e as the tunnel's end unless one was recorded first.
// t.mu is held.
func (t *tunnel) setEnd(e telemetry.TunnelEnd) {
	if !t.endSet {
		t.endSet, t.end = true, e
	}
}

// finish records e as the tunnel's end unless one was recorded first, and
// closes both connections, which ends both pipes.
func (t *tunnel) finish(e telemetry.TunnelEnd) {
	t.mu.Lock()
	t.setEnd(e)
	client, target := t.client, t.target
	t.mu.Unlock()
	if client != nil {
		client.Close()
		target.Close()
	}
}

// ended returns the recorded end.
func (t *tunnel) ended() telemetry.TunnelEnd {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.end
}

// deadline is when a read must have returned: idle after the last byte
// either way, or, once one direction has ended, halfClosedIdle (at most
// idle) after that or the last byte. Zero means none. t.mu is held.
func (t *tunnel) deadline() time.Time {
	last, limit := t.last.Load(), t.idle
	if t.halfAt != 0 {
		last = max(last, t.halfAt)
		if limit == 0 || limit > halfClosedIdle {
			limit = halfClosedIdle
		}
	}
	if limit == 0 {
		return time.Time{}
	}
	return time.Unix(0, last).Add(limit)
}

// arm sets src's read deadline. Deadlines are set under t.mu, so that the
// half-close in the other pipe (which re-arms src) is never overridden by
// a stale one.
func (t *tunnel) arm(src net.Conn) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.deadline()
	src.SetReadDeadline(d)
	return d
}

// halfClose records that src's direction ended at its EOF with srcEnd,
// passes the FIN on to dst, and re-arms dst's reads (the other pipe's)
// for the shorter half-closed bound. It reports false when dst cannot
// half-close, or when the other direction has ended too.
func (t *tunnel) halfClose(dst net.Conn, srcEnd telemetry.TunnelEnd) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.setEnd(srcEnd)
	other := t.halfAt != 0
	if t.halfAt == 0 {
		t.halfAt = time.Now().UnixNano()
	}
	cw, ok := dst.(interface{ CloseWrite() error })
	if other || !ok || cw.CloseWrite() != nil {
		return false
	}
	dst.SetReadDeadline(t.deadline())
	return true
}

// pipe copies src to dst, pending first, until src ends: at its EOF the
// FIN is passed on to dst (CloseWrite) and the other direction goes on,
// for at most halfClosedIdle of silence; any other end closes the tunnel.
// srcEnd and dstEnd name src's and dst's side as the tunnel's end. *n
// counts the bytes written.
//
// Idle: each read waits until idle after the last byte read in either
// direction; past that with nothing either way, the tunnel ends as idle.
func (t *tunnel) pipe(dst, src net.Conn, pending, buf []byte, n *int64, srcEnd, dstEnd telemetry.TunnelEnd) {
	if len(pending) > 0 && !t.write(dst, pending, n, dstEnd) {
		return
	}
	for {
		t.arm(src)
		m, err := src.Read(buf)
		if m > 0 {
			t.last.Store(time.Now().UnixNano())
			if !t.write(dst, buf[:m], n, dstEnd) {
				return
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			t.mu.Lock()
			d, half := t.deadline(), t.halfAt != 0
			t.mu.Unlock()
			if d.IsZero() || time.Now().Before(d) {
				continue // the other direction was busy, or a re-arm
			}
			if half {
				t.finish(srcEnd) // the first end stands
			} else {
				t.finish(telemetry.TunnelIdle)
			}
			return
		case err == io.EOF:
			if !t.halfClose(dst, srcEnd) {
				t.finish(srcEnd)
			}
			return
		default:
			// A reset, or a connection candor closed (whose end was
			// recorded first).
			t.finish(srcEnd)
			return
		}
	}
}

// write writes p to dst within the idle bound, adding to *n (when not
// nil); on failure it closes the tunnel and reports false.
func (t *tunnel) write(dst net.Conn, p []byte, n *int64, dstEnd telemetry.TunnelEnd) bool {
	if t.idle > 0 {
		dst.SetWriteDeadline(time.Now().Add(t.idle))
	}
	m, err := dst.Write(p)
	if n != nil {
		*n += int64(m)
	}
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			dstEnd = telemetry.TunnelIdle // the peer took nothing for idle
		}
		t.finish(dstEnd)
		return false
	}
	return true
}

// tunnelSet is a Handler's registry of tunnels, from the upgrade request
// to the end of the relay. The zero value is ready.
type tunnelSet struct {
	mu  sync.Mutex
	all map[*tunnel]struct{}
}

func (s *tunnelSet) open(route string, up *upstream.Transport, idle time.Duration) *tunnel {
	t := &tunnel{route: route, up: up, idle: idle}
	s.mu.Lock()
	if s.all == nil {
		s.all = make(map[*tunnel]struct{})
	}
	s.all[t] = struct{}{}
	s.mu.Unlock()
	return t
}

func (s *tunnelSet) remove(t *tunnel) {
	s.mu.Lock()
	delete(s.all, t)
	s.mu.Unlock()
}

func (s *tunnelSet) list() []*tunnel {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*tunnel, 0, len(s.all))
	for t := range s.all {
		out = append(out, t)
	}
	return out
}

// Tunnels returns the number of open tunnels: upgraded connections being
// relayed.
func (h *Handler) Tunnels() int {
	n := 0
	for _, t := range h.tunnels.list() {
		if t.established() {
			n++
		}
	}
	return n
}

// CloseTunnels closes the tunnels for which match, given the route's name
// and upstream the tunnel started on, returns true, and returns how many
// open tunnels it closed; their log records say "shutdown". An upgrade
// still waiting for its 101 that matches is closed as soon as it is
// established. Reload calls it for the routes whose upstream changed
// (tunnels are not affected by Swap: each keeps the route it started
// with), and shutdown for all. It may be called at any time from any
// goroutine; match is called without locks held.
func (h *Handler) CloseTunnels(match func(route string, up *upstream.Transport) bool) int {
	n := 0
	for _, t := range h.tunnels.list() {
		if !match(t.route, t.up) {
			continue
		}
		if t.established() {
			n++
		}
		t.shut()
	}
	return n
}
