// Command candor is an HTTP reverse proxy and API gateway with exact,
// explainable failure semantics.
//
//	candor run -c candor.yaml     run the gateway
//	candor validate candor.yaml   check a configuration and exit
//	candor demo                   run the gateway in front of a misbehaving demo upstream
//	candor causes                 print the cause table
//	candor diagnose URL           walk a request to an upstream step by step
//	candor explain CAUSE          print a cause's page
//	candor version                print the version
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"candor/internal/admin"
	"candor/internal/config"
	"candor/internal/demo"
	"candor/internal/diagnose"
	"candor/internal/reload"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// watchDebounce groups the file events of one save into one reload.
const watchDebounce = 200 * time.Millisecond

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  candor run -c FILE        run the gateway with configuration FILE
  candor validate FILE      check configuration FILE and exit (0: valid)
  candor demo [-listen A]   run the gateway in front of a built-in misbehaving upstream
  candor causes [-json]     print the cause table
  candor diagnose [--timeout D] [--host H] URL
                            walk one request to an upstream the way the gateway does
  candor diagnose --route NAME -c FILE [--timeout D] [--host H] [PATH]
                            the same with a route's upstream settings
  candor explain CAUSE      print a cause's page
  candor version            print the version
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "demo":
		return cmdDemo(args[1:], stdout, stderr)
	case "causes":
		return cmdCauses(args[1:], stdout, stderr)
	case "diagnose":
		return cmdDiagnose(args[1:], stdout, stderr)
	case "explain":
		return cmdExplain(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "candor", versionString())
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "candor: unknown command %q\n%s", args[0], usage)
	return 2
}

func versionString() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

// configPath takes the configuration file from -c or the first argument.
func configPath(name string, args []string, stderr io.Writer) (string, bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "", "configuration `file`")
	if err := fs.Parse(args); err != nil {
		return "", false
	}
	if *path == "" && fs.NArg() == 1 {
		*path = fs.Arg(0)
	}
	if *path == "" || fs.NArg() > 1 || (fs.NArg() == 1 && fs.Arg(0) != *path) {
		fmt.Fprintf(stderr, "candor %s: need exactly one configuration file (-c FILE)\n", name)
		return "", false
	}
	return *path, true
}

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	path, ok := configPath("validate", args, stderr)
	if !ok {
		return 2
	}
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: valid (%d routes, %d upstreams)\n", cfg.File, len(cfg.Routes), len(cfg.Upstreams))
	return 0
}

// logOutput opens the log destination: "stderr" (the default), "stdout",
// or a file appended to. Changing it needs a restart.
func logOutput(output string, stderr io.Writer) (io.Writer, func(), error) {
	switch output {
	case "", "stderr":
		return stderr, func() {}, nil
	case "stdout":
		return os.Stdout, func() {}, nil
	}
	f, err := os.OpenFile(output, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

func cmdRun(args []string, stderr io.Writer) int {
	path, ok := configPath("run", args, stderr)
	if !ok {
		return 2
	}
	cfg, data, err := reload.LoadFile(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	out, closeOut, err := logOutput(cfg.Log.Output, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "candor: log.output:", err)
		return 1
	}
	defer closeOut()
	log := newLogger(out, cfg.Log.Level)
	st, err := reload.StartFile(cfg, data, log)
	if err != nil {
		fmt.Fprintln(stderr, "candor:", err)
		return 1
	}
	attrs := []any{"listen", st.GatewayAddr(), "config", cfg.File, "version", versionString()}
	if a := st.TLSAddr(); a != "" {
		attrs = append(attrs, "tls", a)
	}
	if a := st.AdminAddr(); a != "" {
		attrs = append(attrs, "admin", a)
	}
	log.Info("candor started", attrs...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if cfg.Watch == nil || *cfg.Watch {
		if err := reload.Watch(ctx, cfg.File, watchDebounce, log, st.ReloadIfChanged); err != nil {
			log.Warn("configuration file not watched; reload with SIGHUP or the admin API", "config", cfg.File, "error", err.Error())
		}
	}
	return waitAndDrain(st, log, st.Reload)
}

// waitAndDrain blocks until SIGINT or SIGTERM, then drains gracefully
// within the configured drain_timeout. A second signal during the drain
// stops at once (the default action). SIGHUP calls onHUP (a reload), or is
// logged and ignored when onHUP is nil.
func waitAndDrain(st *reload.State, log *slog.Logger, onHUP func() error) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for waiting := true; waiting; {
		select {
		case <-ctx.Done():
			waiting = false
		case <-hup:
			if onHUP == nil {
				log.Warn("SIGHUP ignored: nothing to reload")
				continue
			}
			onHUP() // logs its own outcome
		}
	}
	stop()
	drainTimeout := st.DrainTimeout()
	log.Info("candor draining", "deadline", drainTimeout.String())
	dctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := st.Shutdown(dctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Error("candor shutdown", "error", err.Error())
		return 1
	}
	log.Info("candor stopped")
	return 0
}

func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "gateway `address`")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := newLogger(stderr, "info")
	d, err := demo.Start(*listen, log)
	if err != nil {
		fmt.Fprintln(stderr, "candor demo:", err)
		return 1
	}
	defer d.Close()
	d.PrintGuide(stdout)
	return waitAndDrain(d.State, log, nil)
}

func cmdCauses(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("causes", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	causes := admin.Causes()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(causes)
		return 0
	}
	for _, c := range causes {
		fmt.Fprintf(stdout, "%s  %d  (phase %s, retry %s)\n  what: %s\n  fix:  %s\n\n", c.ID, c.Status, c.Phase, c.Retry, c.Explanation, c.Fix)
	}
	return 0
}

// cmdDiagnose walks one request to an upstream through the gateway's steps
// (package diagnose). Flags may come before or after the URL or PATH.
// Exit 0: a valid response; 1: a failure, with its cause; 2: usage.
func cmdDiagnose(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("diagnose", flag.ContinueOnError)
	fs.SetOutput(stderr)
	route := fs.String("route", "", "probe the upstream of route `NAME` (needs -c)")
	file := fs.String("c", "", "configuration `file` (with --route)")
	timeout := fs.Duration("timeout", 0, "replace the connect, response-head and body idle timeouts with `D`")
	host := fs.String("host", "", "send Host `H` instead of the target's (or the route's match.host)")
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos, args = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "candor diagnose: "+format+"\n%s", append(a, usage)...)
		return 2
	}
	if *timeout < 0 {
		return bad("--timeout must be positive")
	}
	var o *diagnose.Options
	var err error
	switch {
	case *route != "":
		if *file == "" || len(pos) > 1 {
			return bad("--route NAME needs -c FILE and at most one PATH")
		}
		path := ""
		if len(pos) == 1 {
			path = pos[0]
		}
		cfg, lerr := config.Load(*file)
		if lerr != nil {
			fmt.Fprintln(stderr, lerr)
			return 2
		}
		o, err = diagnose.FromRoute(cfg, *route, path)
	case *file != "":
		return bad("-c FILE needs --route NAME")
	case len(pos) != 1:
		return bad("need exactly one URL, or --route NAME -c FILE")
	default:
		o, err = diagnose.FromURL(pos[0])
	}
	if err != nil {
		return bad("%v", err)
	}
	if *timeout > 0 {
		o.SetTimeout(*timeout)
	}
	if *host != "" {
		o.Host = *host
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return diagnose.Run(ctx, stdout, o).ExitCode()
}

// cmdExplain prints one cause's page; an unknown cause lists the known ids.
func cmdExplain(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintf(stderr, "candor explain: need exactly one cause id (candor causes lists them)\n%s", usage)
		return 2
	}
	if diagnose.Explain(stdout, args[0]) {
		return 0
	}
	fmt.Fprintf(stderr, "candor explain: unknown cause %q; the known causes are:\n", args[0])
	for _, id := range diagnose.KnownIDs() {
		fmt.Fprintln(stderr, "  "+id)
	}
	return 2
}
