package reload

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"

	"candor/internal/config"
	"candor/internal/failure"
	"candor/internal/fault"
)

// TestTargetsCarryOver: a reload that changes an upstream (a target is
// added) keeps the unchanged targets' pooled connections and health state;
// a reload rejected after the new generation was built leaves the running
// one's pools open.
func TestTargetsCarryOver(t *testing.T) {
	a, err := fault.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := fault.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c, err := fault.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfgText := func(listen string, urls ...string) string {
		t := ""
		for _, u := range urls {
			t += `{url: "` + u + `"}, `
		}
		return "listen: " + listen + "\nroutes:\n  - {name: r, upstream: u}\nupstreams:\n  u:\n    targets: [" + t + "]\n    health: {passive: {consecutive_failures: 1, max_ejected_percent: 100}}\n"
	}
	parse := func(text string) *config.Config {
		cfg, err := config.Parse("carry.yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	st, err := Start(parse(cfgText("127.0.0.1:0", a.URL(), b.URL())), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Shutdown(t.Context())

	// Warm a pooled connection to A; eject B.
	gen1 := st.Generation().Upstreams["u"]
	tgA, tgB := gen1.Transport.Targets()[0], gen1.Transport.Targets()[1]
	for range 4 {
		resp, err := http.Get("http://" + st.GatewayAddr() + "/ok")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if tgA.IdleConns() == 0 {
		t.Fatal("no pooled connection to A to carry over")
	}
	gen1.Health.Report(tgB, failure.New(failure.ConnectRefused, ""), 0)
	if !gen1.Health.States()[1].Ejected {
		t.Fatal("B not ejected")
	}

	// Changed upstream: C added.
	if err := st.apply(parse(cfgText("127.0.0.1:0", a.URL(), b.URL(), c.URL()))); err != nil {
		t.Fatal(err)
	}
	gen2 := st.Generation().Upstreams["u"]
	if gen2 == gen1 {
		t.Fatal("the changed upstream was not rebuilt")
	}
	if got := gen2.Transport.Targets(); got[0] != tgA || got[1] != tgB {
		t.Fatal("unchanged targets were rebuilt instead of carried over")
	}
	if tgA.IdleConns() == 0 {
		t.Fatal("A's pooled connections were closed by the reload")
	}
	if s := gen2.Health.States(); !s[1].Ejected || s[0].Ejected || s[2].Ejected {
		t.Fatalf("health state not carried over: %+v", s)
	}

	// A reload that fails after building (the port is taken) changes
	// nothing: A's pool stays open and usable.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if err := st.apply(parse(cfgText(busy.Addr().String(), a.URL(), b.URL()))); err == nil {
		t.Fatal("a reload onto a taken port was accepted")
	}
	if st.Generation().Upstreams["u"] != gen2 || tgA.IdleConns() == 0 {
		t.Fatal("a rejected reload closed the running generation's pools")
	}
	resp, err := http.Get("http://" + st.GatewayAddr() + "/ok")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after the rejected reload: %v %v", resp, err)
	}
	resp.Body.Close()
}
