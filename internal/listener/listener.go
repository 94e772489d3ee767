// Package listener runs candor's downstream HTTP server: it binds the
// address, applies server timeouts and limits, and shuts down gracefully.
package listener

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Server timeouts and limits. They guard against clients that hold
// connections open without sending (slowloris) and against oversized heads.
const (
	// ReadHeaderTimeout bounds the time to read a request head.
	ReadHeaderTimeout = 10 * time.Second
	// IdleTimeout bounds an idle keep-alive client connection.
	IdleTimeout = 75 * time.Second
	// MaxHeaderBytes bounds a request head.
	MaxHeaderBytes = 64 << 10
)

// Server is one listening HTTP server.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan error
}

// Listen binds addr and starts serving h in the background.
func Listen(addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		ln:   ln,
		done: make(chan error, 1),
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: ReadHeaderTimeout,
			IdleTimeout:       IdleTimeout,
			MaxHeaderBytes:    MaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
	}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s, nil
}

// Addr returns the bound address (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Shutdown stops accepting, waits for in-flight requests until ctx is done,
// then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	if serr := <-s.done; serr != nil && err == nil {
		err = serr
	}
	return err
}

// Close closes the server at once.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	return err
}
