package fault

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Limits of the fake upstream. Every wait is bounded so that a test that
// forgets a deadline still ends.
const (
	// MaxStall bounds every stall (/stall-head, /stall-body).
	MaxStall = 60 * time.Second
	// maxHeadBytes bounds a request head (request line and fields).
	maxHeadBytes = 64 << 10
	// maxBodyBytes bounds a request body and the /big response.
	maxBodyBytes = 64 << 20
	// keepBodyBytes is how much of a request body [Received.Body] keeps.
	keepBodyBytes = 1 << 20
	// maxReceived is how many request heads [Server.Received] remembers.
	maxReceived = 64
	// drainTimeout bounds the wait for the peer's FIN after the server has
	// half-closed a connection, and drainBytes what it reads meanwhile.
	drainTimeout = time.Second
	drainBytes   = 1 << 20
)

// Server is a fake HTTP/1.1 upstream on 127.0.0.1. It speaks raw TCP, so it
// can write any byte stream, and serves each connection on one goroutine,
// reading request heads in a keep-alive loop and answering by request path:
//
//   - /script/<cause>/<name>: the bytes of [Lookup](<cause>/<name>), then
//     close (FIN). A name not in the catalog gets a valid 404.
//   - /ok: 200, Content-Type application/json, {"ok":true,"path":"/ok"}.
//   - /status/<code>: that status (200-599) with {"status":<code>}; 204 and
//     304 have no body and no Content-Length (RFC 9110 §8.6, §15.3.5,
//     §15.4.5), 205 has Content-Length: 0.
//   - /close: close (FIN) without writing anything.
//   - /reset: close with SO_LINGER 0, so the peer gets a TCP RST.
//   - /stall-head?ms=N (alias /slow-head): write nothing for N ms, then the
//     /ok response. Without ms, wait until the peer closes the connection or
//     the server is closed. Always bounded by [MaxStall].
//   - /stall-body?ms=N: a head with Content-Length: 100 and 10 body bytes,
//     then the same stall, then close: the body stays short.
//   - /big?bytes=N: 200 with N bytes of 'x' (default 1024, at most 64 MiB),
//     Content-Length framing.
//   - /chunked?n=N: 200 with N chunks (default 3, at most 10000), each
//     "chunk <i>\n", then the last chunk.
//   - /echo: 200 with the request as JSON: a [Received] without Body plus
//     body_length.
//   - anything else: a valid 404.
//
// Responses that keep the connection alive honour ?idle_ms=N: if the next
// request does not begin within N ms, the server closes the connection, which
// reproduces the keep-alive race of RFC 9112 §9.6; with ?drop_next=1 the
// server reads the connection's next request and closes without answering
// (an upstream that drops every connection's second request). A request with
// "Connection: close", or any HTTP/1.0 request, gets "Connection: close" and
// the connection is closed after the response.
//
// Request bodies (Content-Length or chunked, at most 64 MiB) are read and
// discarded before the answer; "Expect: 100-continue" is answered with an
// interim 100 first. A plaintext server that receives a TLS ClientHello
// answers a plaintext 400 and closes, as common HTTP servers do. A malformed
// request gets a 400 and the connection is closed.
//
// Close ends everything; the other methods may be called at any time from
// any goroutine.
type Server struct {
	ln        net.Listener
	url       string
	tlsConfig *tls.Config // nil: plaintext
	script    *Script     // non-nil: answer every request with it

	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	requests atomic.Int64

	mu       sync.Mutex
	closed   bool
	conns    map[*net.TCPConn]struct{}
	received []Received // the last maxReceived requests, oldest first
}

// Received is one request as the fake upstream read it: what the gateway
// actually sent.
type Received struct {
	Method string `json:"method"`
	Target string `json:"target"`
	Proto  string `json:"proto"`
	// Header holds the fields in the order received, names as sent (not
	// canonicalised), values without surrounding whitespace.
	Header [][2]string `json:"header"`
	// Body holds the first 1 MiB of the body (chunked bodies decoded).
	Body []byte `json:"-"`
	// BodyLen is the length of the whole body.
	BodyLen int64 `json:"body_length"`
}

// NewServer starts a fake upstream on 127.0.0.1 with an ephemeral port. The
// caller must Close it.
func NewServer() (*Server, error) { return newServer("127.0.0.1:0", nil, nil) }

// NewServerAt starts a fake upstream listening on addr (a loopback
// host:port), e.g. to bring a target back on the port it had before it was
// stopped. The caller must Close it.
func NewServerAt(addr string) (*Server, error) { return newServer(addr, nil, nil) }

// NewScriptServer starts a fake upstream that answers every request, whatever
// its path, with s.Bytes and then closes the connection. It suits tests and
// demos that point a whole upstream at one fault. The caller must Close it.
func NewScriptServer(s Script) (*Server, error) {
	s.Bytes = append([]byte(nil), s.Bytes...)
	return newServer("127.0.0.1:0", nil, &s)
}

func newServer(addr string, cfg *tls.Config, script *Script) (*Server, error) {
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if cfg != nil {
		scheme = "https"
	}
	s := &Server{
		ln:        ln,
		url:       (&url.URL{Scheme: scheme, Host: ln.Addr().String()}).String(),
		tlsConfig: cfg,
		script:    script,
		done:      make(chan struct{}),
		conns:     make(map[*net.TCPConn]struct{}),
	}
	s.wg.Go(s.acceptLoop)
	return s, nil
}

// Addr returns the listening address, "127.0.0.1:port".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL returns "http://127.0.0.1:port", or "https://..." for a TLS server.
func (s *Server) URL() string { return s.url }

// Requests returns how many request heads the server has read.
func (s *Server) Requests() int64 { return s.requests.Load() }

// Received returns copies of the last 64 requests read, oldest first.
func (s *Server) Received() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Received, len(s.received))
	for i, r := range s.received {
		r.Header = append([][2]string(nil), r.Header...)
		r.Body = append([]byte(nil), r.Body...)
		out[i] = r
	}
	return out
}

// Close stops the listener, closes every live connection (ending stalls at
// once) and waits for the server's goroutines. It returns the listener's
// close error; later calls return the same and do nothing.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		s.closeErr = s.ln.Close()
		s.mu.Lock()
		s.closed = true
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s.closeErr
}

func (s *Server) acceptLoop() {
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			// Closed by Close, or a resource error (EMFILE) that a fake
			// upstream does not try to survive.
			return
		}
		raw := nc.(*net.TCPConn)
		if !s.track(raw) {
			_ = raw.Close()
			return
		}
		s.wg.Go(func() {
			defer s.untrack(raw)
			s.serveConn(raw)
		})
	}
}

func (s *Server) track(c *net.TCPConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *net.TCPConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) record(r Received) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.received) == maxReceived {
		copy(s.received, s.received[1:])
		s.received = s.received[:maxReceived-1]
	}
	s.received = append(s.received, r)
}

// conn is one accepted connection, owned by one goroutine.
type conn struct {
	s   *Server
	raw *net.TCPConn
	tls *tls.Conn // nil on a plaintext server
	c   net.Conn  // tls, or raw
	br  *bufio.Reader
	bw  *bufio.Writer
	// idle, if positive, bounds the wait for the next request (?idle_ms).
	idle time.Duration
	// dropNext closes the connection, without answering, when its next
	// request arrives (?drop_next=1).
	dropNext bool
}

func (s *Server) serveConn(raw *net.TCPConn) {
	c := &conn{s: s, raw: raw, c: raw}
	if s.tlsConfig != nil {
		c.tls = tls.Server(raw, s.tlsConfig)
		c.c = c.tls
	}
	c.br = bufio.NewReaderSize(c.c, 4<<10)
	c.bw = bufio.NewWriterSize(c.c, 4<<10)
	defer raw.Close()
	for {
		r, err := c.readRequest()
		if err != nil {
			if bad, ok := errors.AsType[*badRequest](err); ok {
				c.writeBadRequest(bad)
			}
			c.closeGracefully()
			return
		}
		c.s.record(r.Received)
		if c.dropNext {
			// The upstream took the request and closed without a word:
			// what a server does that times out an idle connection just
			// as a request arrives on it.
			c.closeGracefully()
			return
		}
		if !c.handle(r) {
			c.closeGracefully()
			return
		}
		c.idle = r.duration("idle_ms", 0)
		c.dropNext = r.number("drop_next", 0, 1) == 1
	}
}

// closeGracefully half-closes the connection and waits (bounded) for the
// peer to close its side, so that the peer reads every byte written and then
// a clean EOF instead of an RST caused by unread request bytes.
func (c *conn) closeGracefully() {
	select {
	case <-c.s.done:
		return
	default:
	}
	_ = c.raw.SetDeadline(time.Now().Add(drainTimeout))
	if c.tls != nil && c.tls.ConnectionState().HandshakeComplete {
		_ = c.tls.CloseWrite() // close_notify
	}
	_ = c.raw.CloseWrite()
	_, _ = io.CopyN(io.Discard, c.raw, drainBytes)
	_ = c.raw.Close()
}

// stall waits d (at most [MaxStall]; 0 means [MaxStall]). It reports true if
// the whole time elapsed and false if the peer closed the connection or the
// server was closed. If the peer sends bytes meanwhile (a pipelined request),
// they stay buffered and the wait continues on a timer.
func (c *conn) stall(d time.Duration) bool {
	if d <= 0 || d > MaxStall {
		d = MaxStall
	}
	deadline := time.Now().Add(d)
	_ = c.c.SetReadDeadline(deadline)
	_, err := c.br.Peek(1)
	_ = c.c.SetReadDeadline(time.Time{})
	if err == nil {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-c.s.done:
			return false
		}
	}
	return errors.Is(err, os.ErrDeadlineExceeded)
}
