package reload

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"candor/internal/config"
	"candor/internal/h1"
	"candor/internal/listener"
)

// cleartext serves the plain gateway listener's connections: HTTP/1.1,
// and, with server.h2c, HTTP/2 with prior knowledge (RFC 9113 §3.3) on the
// connections that open with the HTTP/2 preface, which h1 hands over.
//
// h1's hand-over hook is set once, before it serves; server.h2c may change
// on any reload. With h2c off, a connection that opens with the preface
// goes to noH2C, the same HTTP/1.1 server without the hook, which answers
// it exactly as if there were no hook (505 request_version_not_supported:
// "PRI * HTTP/2.0" is a request line of another version).
type cleartext struct {
	h1    *h1.Server
	noH2C *h1.Server
	h2    *listener.H2
	on    atomic.Bool // server.h2c
}

// cleartext builds the plain listener's servers around h, the listener's
// HTTP/1.1 server, not serving yet.
func (s *State) cleartext(cfg *config.Config, h *h1.Server) *cleartext {
	c := &cleartext{h1: h, noH2C: s.gatewayServer(cfg), h2: listener.NewH2(s.Handler, cfg.Server, s.log)}
	c.on.Store(cfg.Server.H2C)
	h.H2C = c.handOff
	return c
}

// handOff takes a connection that opened with the HTTP/2 preface (replayed
// by nc's first reads).
func (c *cleartext) handOff(nc net.Conn) {
	if c.on.Load() {
		c.h2.ServeConn(nc)
		return
	}
	c.noH2C.ServeConn(nc)
}

// update applies a reloaded configuration's server section to connections
// that start from now on (h1's own settings are set by apply).
func (c *cleartext) update(cfg *config.Config) {
	c.noH2C.SetConfig(serverConfig(cfg))
	c.h2.Update(cfg.Server)
	c.on.Store(cfg.Server.H2C)
}

func (c *cleartext) ServeConn(nc net.Conn) { c.h1.ServeConn(nc) }

// ServeConnAsync lets the accept loop serve without a goroutine waiting
// per connection (listener.AsyncConnServer): idle keep-alive connections
// then cost no goroutine.
func (c *cleartext) ServeConnAsync(nc net.Conn, done func()) { c.h1.ServeConnAsync(nc, done) }

// Shutdown drains the HTTP/1.1 connections and sends GOAWAY to the HTTP/2
// ones, all within ctx.
func (c *cleartext) Shutdown(ctx context.Context) error {
	return listener.ShutdownAll(ctx, c.h1, c.noH2C, c.h2)
}

func (c *cleartext) Close() error {
	return errors.Join(c.h1.Close(), c.noH2C.Close(), c.h2.Close())
}

var _ listener.ConnServer = (*cleartext)(nil)

// tlsListener is the TLS listener (the tls section) and its servers: TLS
// termination, then HTTP/1.1 or HTTP/2 by ALPN. Its own servers, rather
// than the plain listener's, so that draining one listener leaves the
// other's connections alone; its connections count against the same
// server.max_connections.
type tlsListener struct {
	srv  *listener.Server
	term *listener.TLS
	h1   *h1.Server
	// listen is tls.listen as configured: a reload with another address
	// opens a new listener.
	listen string
}

// loadTLS reads the certificates of cfg's tls section (nil without one).
// Every load reads the files again; files that cannot be used reject the
// load whole.
func (s *State) loadTLS(cfg *config.Config) (*listener.TLSSettings, error) {
	if cfg.TLS == nil {
		return nil, nil
	}
	set, err := listener.LoadTLS(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.File, err)
	}
	return set, nil
}

// openTLS opens the TLS listener when tls.listen is new or changed; nil
// when there is none to open (no tls section, or the running listener's
// address is unchanged). s.mu is held.
func (s *State) openTLS(cfg *config.Config, set *listener.TLSSettings) (*tlsListener, error) {
	if cfg.TLS == nil || s.tls != nil && s.tls.listen == cfg.TLS.Listen {
		return nil, nil
	}
	l := &tlsListener{h1: s.gatewayServer(cfg), listen: cfg.TLS.Listen}
	l.term = listener.NewTLS(set, l.h1, listener.NewH2(s.Handler, cfg.Server, s.log), s.log)
	srv, err := listener.ListenConns(cfg.TLS.Listen, s.limit, l.term)
	if err != nil {
		return nil, fmt.Errorf("%s: tls.listen: %w", cfg.File, err)
	}
	l.srv = srv
	return l, nil
}

// swapTLS puts the TLS side of a load in force once nothing can fail: the
// new listener (opened by openTLS) replaces the old one, which drains in
// the background; without a new one, the running listener takes the new
// certificates and server settings, or closes (after draining) when the
// tls section is gone. s.mu is held.
func (s *State) swapTLS(cfg *config.Config, l *tlsListener, set *listener.TLSSettings, drain time.Duration) {
	if set != nil {
		for _, w := range set.Warnings {
			s.log.Warn("TLS certificate: "+w, "config", cfg.File)
		}
	}
	switch {
	case l != nil || cfg.TLS == nil:
		old := s.tls
		s.tls = l
		if old != nil {
			go shutdown(old.srv, drain)
		}
	default:
		s.tls.term.Update(set)
		s.tls.h1.SetConfig(serverConfig(cfg))
		s.tls.term.H2().Update(cfg.Server)
	}
}

// TLSAddr returns the TLS listener's bound address, or "" without one.
func (s *State) TLSAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tls == nil {
		return ""
	}
	return s.tls.srv.Addr()
}
