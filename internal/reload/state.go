package reload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"candor/internal/admin"
	"candor/internal/config"
	"candor/internal/h1"
	"candor/internal/listener"
	"candor/internal/proxy"
	"candor/internal/router"
	"candor/internal/telemetry"
	"candor/internal/upstream"
)

// State is a running gateway: its current Generation, the proxy handler
// serving it, the listeners, and the record of reloads. main owns it. A
// reload builds the whole new generation and validates it before swapping
// it in, so a bad configuration never replaces a running good one.
//
// Reload, SetMaintenance, SetDrain and Shutdown are serialised; the
// handler serves requests concurrently with all of them.
type State struct {
	Handler *proxy.Handler

	// tracer is set up once, at Start, from the tracing section (nil
	// without one); changes of that section need a restart.
	tracer *telemetry.Tracer

	mu      sync.Mutex
	gen     *Generation
	gateway *listener.Server
	// gatewayH1 serves the gateway listener's connections; limit bounds
	// the client connections of all gateway listeners together
	// (server.max_connections).
	gatewayH1 *h1.Server
	limit     *listener.Limit
	admin     *listener.Server // nil without an admin listener
	file      string
	log       *slog.Logger

	// gatewayH2C serves the gateway listener's connections around
	// gatewayH1 (h2c); tls is the TLS listener, nil without one.
	gatewayH2C *cleartext
	tls        *tlsListener

	// overrides holds admin-set maintenance ("route NAME") and drain
	// ("target UPSTREAM ADDR") with the file's value when they were set.
	// The latest explicit intent wins: an override survives reloads while
	// the file's value stays what it was, and yields once the file changes
	// it.
	overrides map[string]override

	// tried is the digest of the file bytes last attempted (applied or
	// rejected), so that a watcher reloads only real changes and reports
	// a broken save once.
	tried [32]byte
	// reloading serialises reloads from reading the file to the swap, so
	// that an older read is never applied after a newer one.
	reloading sync.Mutex
	// closed is set by Shutdown: later reloads do nothing.
	closed bool
	// token is the admin token in force (a string), read by every admin
	// request without taking mu.
	token atomic.Value

	status  admin.Status
	reg     *prometheus.Registry
	reloads *prometheus.CounterVec
	lastOK  prometheus.Gauge

	// recent keeps the last failures and the rates for the admin API;
	// its size (admin.failures) is read at start.
	recent *telemetry.Recent
}

// override is an admin-set value and the file's value it overrode.
type override struct{ on, file bool }

// StartFile starts the gateway with cfg, parsed from data, the content of
// the file later reloads read (see [LoadFile]).
func StartFile(cfg *config.Config, data []byte, log *slog.Logger) (*State, error) {
	s, err := Start(cfg, log)
	if err != nil {
		return nil, err
	}
	s.tried = digest(data)
	return s, nil
}

// LoadFile reads and parses the configuration file at path, returning the
// bytes it parsed.
func LoadFile(path string) (*config.Config, []byte, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, nil, err
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := config.Parse(abs, data)
	return cfg, data, err
}

// Start builds cfg's Generation and opens its listeners. cfg.File is the
// file later reloads read.
func Start(cfg *config.Config, log *slog.Logger) (*State, error) {
	s := &State{file: cfg.File, log: log, overrides: map[string]override{}, reg: prometheus.NewRegistry()}
	s.limit = listener.NewLimit(cfg.Server.MaxConnections)
	s.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "candor_config_reloads_total",
		Help: "Configuration loads by result (success or failure); a failure leaves the running configuration in force.",
	}, []string{"result"})
	s.lastOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "candor_config_last_reload_success_timestamp_seconds",
		Help: "Unix time of the last configuration load that took effect.",
	})
	s.reg.MustRegister(s.reloads, s.lastOK, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Request metrics, and target health and pools read at scrape time.
	metrics := telemetry.NewMetrics(s.reg)
	s.reg.MustRegister(telemetry.NewTargetCollector(s.targetStats))
	tracer, err := newTracer(cfg)
	if err != nil {
		return nil, err
	}
	s.tracer = tracer
	s.recent = telemetry.NewRecent(failuresOf(cfg))
	s.Handler = proxy.New(&proxy.Table{Router: router.New(nil)}, proxy.Options{Recorder: s.recent, Tracer: tracer, Log: log, Access: cfg.Log.Access, Sample: sampleOf(cfg.Log.Sample), Query: cfg.Log.Query, Metrics: metrics})
	if err := s.apply(cfg); err != nil {
		s.reloads.WithLabelValues("failure").Inc()
		s.tracer.Shutdown(context.Background())
		return nil, err
	}
	return s, nil
}

// GatewayAddr returns the gateway listener's bound address.
func (s *State) GatewayAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gateway.Addr()
}

// AdminAddr returns the admin listener's bound address, or "".
func (s *State) AdminAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admin == nil {
		return ""
	}
	return s.admin.Addr()
}

// Generation returns the current generation.
func (s *State) Generation() *Generation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

// Reload reads the configuration file again and applies it. On any error
// (unreadable, syntax, validation, a listener that cannot be opened) the
// running generation keeps serving; the error is logged with file, line
// and reason, counted, and shown by the admin API.
func (s *State) Reload() error {
	s.reloading.Lock()
	defer s.reloading.Unlock()
	cfg, data, err := LoadFile(s.file)
	s.mu.Lock()
	s.tried = digest(data)
	s.mu.Unlock()
	if err == nil {
		err = s.apply(cfg)
	}
	if err != nil {
		s.mu.Lock()
		s.status.ReloadsFailed++
		s.status.LastError = err.Error()
		s.status.LastErrorAt = time.Now()
		s.mu.Unlock()
		s.reloads.WithLabelValues("failure").Inc()
		s.log.Error("configuration rejected; the running configuration stays in force", "config", s.file, "error", err.Error())
		return err
	}
	s.log.Info("configuration reloaded", "config", s.file, "generation", s.Status().Generation)
	return nil
}

// ReloadIfChanged reloads when the file's bytes differ from those last
// tried (applied or rejected): a watcher's many events for one save make
// one reload, and a broken save is reported once.
func (s *State) ReloadIfChanged() {
	data, err := os.ReadFile(s.file)
	s.mu.Lock()
	same := err == nil && digest(data) == s.tried
	s.mu.Unlock()
	if !same {
		s.Reload()
	}
}

// apply opens any changed listeners, builds the new generation (carrying
// over unchanged upstreams), swaps it in, then releases what the old one
// no longer shares. Listeners open before anything is swapped, so a port
// that cannot be bound rejects the reload whole.
func (s *State) apply(cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("candor is shutting down")
	}
	prev := s.gen
	if prev != nil {
		s.warnRestart(prev.Config, cfg)
	}

	tlsSet, err := s.loadTLS(cfg)
	if err != nil {
		return err
	}
	g, err := Build(cfg, s.log, prev)
	if err != nil {
		return err
	}
	// Listeners open before anything is swapped: a port that cannot be
	// bound rejects the reload whole.
	var newGateway, newAdmin *listener.Server
	var newH1 *h1.Server
	var newH2C *cleartext
	if prev == nil || cfg.Listen != prev.Config.Listen {
		newH1 = s.gatewayServer(cfg)
		newH2C = s.cleartext(cfg, newH1)
		if newGateway, err = listener.ListenConns(cfg.Listen, s.limit, newH2C); err != nil {
			g.closeExcept(prev)
			return fmt.Errorf("%s: listen: %w", cfg.File, err)
		}
	}
	adminChanged := prev == nil || adminAddr(cfg) != adminAddr(prev.Config)
	if adminChanged && cfg.Admin != nil {
		if newAdmin, err = listener.Listen(cfg.Admin.Listen, admin.WithToken(admin.Handler(s, s.reg), s.adminToken), s.log); err != nil {
			closeAll(newGateway)
			g.closeExcept(prev)
			return fmt.Errorf("%s: admin.listen: %w", cfg.File, err)
		}
	}
	newTLS, err := s.openTLS(cfg, tlsSet)
	if err != nil {
		closeAll(newGateway, newAdmin)
		g.closeExcept(prev)
		return err
	}
	// Nothing can fail from here on: drain flags and admin settings
	// reach the (possibly shared) upstreams only now.
	s.applyOverrides(cfg, g)
	// The server section applies to the requests that start from now on
	// (a new listener got it when it was built).
	if newH1 == nil {
		s.gatewayH1.SetConfig(serverConfig(cfg))
		s.gatewayH2C.update(cfg)
	}
	s.limit.SetMax(cfg.Server.MaxConnections)
	if cfg.Admin != nil {
		s.token.Store(cfg.Admin.Token)
	} else {
		s.token.Store("")
	}
	g.Start(prev)
	s.Handler.Swap(g.Table) // requests that started earlier finish on the old table
	s.gen = g
	if prev != nil && tracingChanged(prev.Config.Tracing, cfg.Tracing) {
		s.log.Warn("tracing configuration changed: it takes effect at the next restart", "config", cfg.File)
	}

	drain := cfg.DrainTimeout.Std()
	if newGateway != nil {
		old := s.gateway
		s.gateway, s.gatewayH1, s.gatewayH2C = newGateway, newH1, newH2C
		go shutdown(old, drain)
	}
	s.swapTLS(cfg, newTLS, tlsSet, drain)
	if adminChanged {
		old := s.admin
		s.admin = newAdmin
		go shutdown(old, drain)
	}
	if prev != nil {
		// Tunnels whose upstream was rebuilt end; the others run on.
		kept := map[*upstream.Transport]bool{}
		for _, up := range g.Upstreams {
			kept[up.Transport] = true
		}
		if n := s.Handler.CloseTunnels(func(_ string, tr *upstream.Transport) bool { return !kept[tr] }); n > 0 {
			s.log.Info("closed tunnels to changed upstreams", "tunnels", n)
		}
		prev.closeExcept(g)
	}
	s.status.Generation++
	s.status.File = cfg.File
	s.status.LoadedAt = time.Now()
	s.status.ReloadsOK++
	s.reloads.WithLabelValues("success").Inc()
	s.lastOK.Set(float64(s.status.LoadedAt.Unix()))
	return nil
}

// gatewayServer builds an HTTP/1.1 server of the gateway: the plain
// listener's, and the TLS listener's own (serve.go), so that draining one
// listener leaves the other's connections alone; both count against the
// same s.limit (one server.max_connections over both).
func (s *State) gatewayServer(cfg *config.Config) *h1.Server {
	srv := &h1.Server{Handler: s.Handler, Reject: s.Handler.Reject, Log: s.log}
	srv.SetConfig(serverConfig(cfg))
	return srv
}

// serverConfig is the downstream server's limits and timeouts of cfg.
func serverConfig(cfg *config.Config) h1.Config {
	sv := cfg.Server
	return h1.Config{
		MaxRequestLine:    int(sv.MaxRequestLine),
		MaxHeaderBytes:    int(sv.MaxHeaderBytes),
		MaxHeaderFields:   sv.MaxHeaderFields,
		ReadHeaderTimeout: sv.ReadHeaderTimeout.Std(),
		BodyTimeout:       sv.BodyTimeout.Std(),
		WriteTimeout:      sv.WriteTimeout.Std(),
		IdleTimeout:       sv.IdleTimeout.Std(),
	}
}

func adminAddr(c *config.Config) string {
	if c.Admin == nil {
		return ""
	}
	return c.Admin.Listen
}

// shutdown drains a replaced listener in the background.
func shutdown(srv *listener.Server, drain time.Duration) {
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	srv.Shutdown(ctx)
}

func closeAll(srvs ...*listener.Server) {
	for _, srv := range srvs {
		if srv != nil {
			srv.Close()
		}
	}
}

// applyOverrides re-applies admin settings to a new generation, dropping
// those whose file value changed; s.mu is held.
func (s *State) applyOverrides(cfg *config.Config, g *Generation) {
	for i, rt := range g.Table.Routes {
		key := "route " + rt.Name
		if o, ok := s.overrides[key]; ok {
			if o.file == cfg.Routes[i].Maintenance {
				rt.Maintenance.Store(o.on)
			} else {
				delete(s.overrides, key)
			}
		}
	}
	for name, up := range g.Upstreams {
		for i, tg := range up.Transport.Targets() {
			drain := cfg.Upstreams[name].Targets[i].Drain
			key := "target " + name + " " + tg.Addr
			if o, ok := s.overrides[key]; ok {
				if o.file == drain {
					drain = o.on
				} else {
					delete(s.overrides, key)
				}
			}
			up.SetDrain(i, drain)
		}
	}
}

// Status implements admin.Control.
func (s *State) Status() admin.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Tunnels = s.Handler.Tunnels()
	return st
}

// SetMaintenance implements admin.Control: it puts a route in or out of
// maintenance now, and keeps that choice across reloads.
func (s *State) SetMaintenance(route string, on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, rt := range s.gen.Table.Routes {
		if rt.Name == route {
			rt.Maintenance.Store(on)
			s.overrides["route "+route] = override{on: on, file: s.gen.Config.Routes[i].Maintenance}
			s.log.Warn("route maintenance changed", "route", route, "maintenance", on)
			return nil
		}
	}
	return admin.ErrNotFound
}

// SetDrain implements admin.Control: target is the target's index in the
// upstream's list or its host:port.
func (s *State) SetDrain(upstreamName, target string, on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	up := s.gen.Upstreams[upstreamName]
	if up == nil {
		return admin.ErrNotFound
	}
	for i, tg := range up.Transport.Targets() {
		if tg.Addr == target || strconv.Itoa(i) == target {
			up.SetDrain(i, on)
			s.overrides["target "+upstreamName+" "+tg.Addr] = override{on: on, file: s.gen.Config.Upstreams[upstreamName].Targets[i].Drain}
			s.log.Warn("target drain changed", "upstream", upstreamName, "target", tg.Addr, "drain", on)
			return nil
		}
	}
	return admin.ErrNotFound
}

// Upstreams implements admin.Control.
func (s *State) Upstreams() []admin.UpstreamState {
	s.mu.Lock()
	g := s.gen
	s.mu.Unlock()
	var out []admin.UpstreamState
	for name, up := range g.Upstreams {
		us := admin.UpstreamState{Name: name, Policy: up.Balancer.Policy().String(), Usable: up.Balancer.Usable()}
		states := up.Health.States()
		for i, tg := range up.Transport.Targets() {
			ts := admin.TargetState{Target: tg.Addr, Weight: tg.Weight, InFlight: tg.InFlight(), Drained: up.Drained(i), Healthy: true}
			for _, h := range states {
				if h.Target == tg.Addr {
					ts.Healthy, ts.Ejected, ts.EjectedUntil, ts.LastCause = h.Healthy, h.Ejected, h.EjectedUntil, h.LastCause
				}
			}
			ts.RecentCauses = s.recent.TargetCauses(name, tg.Addr)
			us.Targets = append(us.Targets, ts)
		}
		out = append(out, us)
	}
	return out
}

// Routes implements admin.Control.
func (s *State) Routes() []admin.RouteState {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []admin.RouteState
	for i, rt := range s.gen.Table.Routes {
		rc := s.gen.Config.Routes[i]
		out = append(out, admin.RouteState{
			Name: rt.Name, Host: rc.Match.Host, PathPrefix: rc.Match.PathPrefix,
			Upstream: rc.Upstream, Maintenance: rt.Maintenance.Load(), Strict: rt.Strict != nil,
		})
	}
	return out
}

// Shutdown stops accepting, lets in-flight requests finish until ctx is
// done (the last response of each keep-alive connection says
// Connection: close), ends tunnels, and releases the generation.
func (s *State) Shutdown(ctx context.Context) error {
	// Take what is needed and let go of the lock before draining: admin
	// requests during the drain must not wait for it (nor it for them).
	s.reloading.Lock()
	s.mu.Lock()
	s.closed = true
	gateway, adm, gen, tracer := s.gateway, s.admin, s.gen, s.tracer
	tlsl := s.tls
	s.mu.Unlock()
	s.reloading.Unlock()
	var tlsErr error
	var tlsDone sync.WaitGroup
	if tlsl != nil {
		tlsDone.Go(func() { tlsErr = tlsl.srv.Shutdown(ctx) })
	}
	err := gateway.Shutdown(ctx)
	tlsDone.Wait()
	err = errors.Join(err, tlsErr)
	if adm != nil {
		err = errors.Join(err, adm.Shutdown(ctx))
	}
	s.Handler.CloseTunnels(func(string, *upstream.Transport) bool { return true })
	gen.Close()
	// Spans of the requests that just finished are exported now.
	err = errors.Join(err, tracer.Shutdown(ctx))
	return err
}

// DrainTimeout returns the configured shutdown deadline.
func (s *State) DrainTimeout() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen.Config.DrainTimeout.Std()
}

// sampleOf returns the configured sample fraction; nil means 1.
func sampleOf(p *float64) float64 {
	if p == nil {
		return 1
	}
	return *p
}

// adminToken returns the admin token in force.
func (s *State) adminToken() string {
	tok, _ := s.token.Load().(string)
	return tok
}

// warnRestart logs the settings a reload does not change: they need a
// restart (the log and its destination, and file watching).
func (s *State) warnRestart(old, cfg *config.Config) {
	if !reflect.DeepEqual(old.Log, cfg.Log) {
		s.log.Warn("log settings changed: they take effect at the next restart", "config", cfg.File)
	}
	if old.Watching() != cfg.Watching() {
		s.log.Warn("watch changed: it takes effect at the next restart", "config", cfg.File)
	}
}

// Failures implements admin.Control: the most recent failed requests.
func (s *State) Failures() []telemetry.Failure { return s.recent.Failures() }

// Rates implements admin.Control: request and failure counts by cause.
func (s *State) Rates() telemetry.Rates { return s.recent.Rates() }

// failuresOf returns how many recent failures the admin API keeps.
func failuresOf(cfg *config.Config) int {
	if cfg.Admin == nil || cfg.Admin.Failures <= 0 {
		return telemetry.DefaultFailures
	}
	return cfg.Admin.Failures
}

// File returns the configuration file.
func (s *State) File() string { return s.file }

var _ admin.Control = (*State)(nil)

var _ http.Handler = (*proxy.Handler)(nil)
