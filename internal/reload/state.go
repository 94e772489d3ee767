package reload

import (
	"context"
	"errors"
	"log/slog"

	"candor/internal/admin"
	"candor/internal/config"
	"candor/internal/listener"
	"candor/internal/proxy"
)

// State is a running gateway: its current Generation, the proxy handler
// serving it, and the listeners. main owns it.
type State struct {
	Gen     *Generation
	Handler *proxy.Handler
	Gateway *listener.Server
	Admin   *listener.Server // nil without an admin listener
	log     *slog.Logger
}

// Start builds cfg's Generation and opens its listeners.
func Start(cfg *config.Config, log *slog.Logger) (*State, error) {
	g, err := Build(cfg, log)
	if err != nil {
		return nil, err
	}
	g.Start()
	s := &State{Gen: g, log: log}
	s.Handler = proxy.New(g.Table, proxy.Options{Log: log, Access: cfg.Log.Access})
	if s.Gateway, err = listener.Listen(cfg.Listen, s.Handler, log); err != nil {
		g.Close()
		return nil, err
	}
	if cfg.Admin != nil {
		if s.Admin, err = listener.Listen(cfg.Admin.Listen, admin.Handler(), log); err != nil {
			s.Gateway.Close()
			g.Close()
			return nil, err
		}
	}
	return s, nil
}

// Shutdown stops accepting, lets in-flight requests finish until ctx is
// done, and releases the generation.
func (s *State) Shutdown(ctx context.Context) error {
	err := s.Gateway.Shutdown(ctx)
	if s.Admin != nil {
		err = errors.Join(err, s.Admin.Shutdown(ctx))
	}
	s.Gen.Close()
	return err
}
