package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"candor/internal/admin"
	"candor/internal/config"
	"candor/internal/failure"
	"candor/internal/fault"
	"candor/internal/reload"
)

// chromiumPath is Debian's chromium, which .ci/run installs.
const chromiumPath = "/usr/bin/chromium"

// TestDashboardInBrowser runs the real gateway with its admin listener in
// front of two fault upstreams, opens the dashboard in headless Chromium,
// takes one target down and checks that the page shows it ejected and
// lists the failure with its cause, explanation and fix. The screenshot
// is saved in the test's temp dir, and to docs/dashboard.png with
// CANDOR_UPDATE_SCREENSHOT=1.
func TestDashboardInBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("headless Chromium is needed at %s (Debian's chromium package; .ci/run installs it: apt-get install chromium): %v", chromiumPath, err)
	}
	up := [2]*fault.Server{}
	for i := range up {
		s, err := fault.NewServer()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		up[i] = s
	}
	down, alive := up[0], up[1]

	cfg, err := config.Parse("dashboard.yaml", []byte(`listen: 127.0.0.1:0
admin: {listen: 127.0.0.1:0}
routes:
  - name: legacy
    match: {path_prefix: /legacy}
    upstream: app
    maintenance: true
  - name: api
    match: {path_prefix: /}
    upstream: app
    retry: {attempts: 1}
upstreams:
  app:
    targets: [{url: "`+down.URL()+`"}, {url: "`+alive.URL()+`"}]
    balance: {policy: round_robin}
    timeouts: {connect: 1s, response_header: 2s}
    health:
      passive: {consecutive_failures: 1, base_ejection: 2m}
`))
	if err != nil {
		t.Fatal(err)
	}
	st, err := reload.Start(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st.Shutdown(ctx)
	})
	gw, adm := "http://"+st.GatewayAddr(), "http://"+st.AdminAddr()
	hc := &http.Client{Timeout: 5 * time.Second}
	send := func(path string) int {
		res, err := hc.Get(gw + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	for range 20 {
		if code := send("/ok"); code != 200 {
			t.Fatalf("GET /ok through two healthy targets: %d", code)
		}
	}
	send("/legacy/report") // route_maintenance
	send("/legacy/export")

	// The flags this machine's Chromium needs: no sandbox (root), no GPU,
	// and no background connections to Google's hosts, which the closed
	// network refuses.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 900),
	)
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	browser, cancel := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	defer cancel()
	// The first action starts the browser, on a context without a
	// deadline (a deadline there would bound the browser's life); the
	// waits after it are bounded.
	if err := chromedp.Do(browser, chromedp.Navigate(adm+"/dashboard")); err != nil {
		t.Fatalf("open the dashboard: %v", err)
	}
	ctx, cancel := context.WithTimeout(browser, 60*time.Second)
	defer cancel()

	target := func(addr, state string) chromedp.CSS {
		return chromedp.CSS(fmt.Sprintf(`#upstreams .target[data-target=%q][data-state=%q]`, addr, state))
	}
	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(target(down.Addr(), "healthy")),
		chromedp.WaitVisible(target(alive.Addr(), "healthy")),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-state="live"]`)),
	); err != nil {
		t.Fatalf("dashboard with two healthy targets: %v", err)
	}

	// Take one target down: the next request sent to it is refused, and
	// passive health ejects it.
	if err := down.Close(); err != nil {
		t.Fatal(err)
	}
	ejected := false
	for i := 0; i < 20 && !ejected; i++ {
		send("/ok")
		ejected = isEjected(t, hc, adm, down.Addr())
	}
	if !ejected {
		t.Fatalf("target %s not ejected after 20 requests", down.Addr())
	}
	for range 10 {
		send("/ok") // to the surviving target
	}

	row := failure.ConnectRefused.Row()
	failureRow := fmt.Sprintf(`#failures .failure[data-cause=%q][data-target=%q]`, row.ID, down.Addr())
	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(target(down.Addr(), "ejected")),
		chromedp.WaitVisible(target(alive.Addr(), "healthy")),
		chromedp.WaitVisible(chromedp.CSS(failureRow)),
		chromedp.Click(chromedp.CSS(failureRow+" summary")),
		chromedp.WaitVisible(chromedp.CSS(failureRow+" .explanation")),
		chromedp.WaitVisible(chromedp.CSS(`#chart-causes rect.bar[data-cause="`+row.ID+`"]`)),
	); err != nil {
		t.Fatalf("dashboard after %s went down: %v", down.Addr(), err)
	}
	body, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(failureRow+" .body")))
	if err != nil {
		t.Fatal(err)
	}
	why, err := chromedp.Run(ctx, chromedp.Text(target(down.Addr(), "ejected")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(body, row.Explanation) || !strings.Contains(body, row.Fix) {
		t.Fatalf("expanded failure row lacks the explanation or the fix:\n%s", body)
	}
	if !strings.Contains(why, row.ID) {
		t.Fatalf("ejected target's line does not give the cause %s: %q", row.ID, why)
	}

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)
	if os.Getenv("CANDOR_UPDATE_SCREENSHOT") == "1" {
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "dashboard.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Log("updated docs/dashboard.png")
	}
}

// isEjected asks the admin API whether addr is ejected.
func isEjected(t *testing.T, hc *http.Client, adm, addr string) bool {
	t.Helper()
	res, err := hc.Get(adm + "/upstreams")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var ups []admin.UpstreamState
	if err := json.NewDecoder(res.Body).Decode(&ups); err != nil {
		t.Fatal(err)
	}
	for _, u := range ups {
		for _, tg := range u.Targets {
			if tg.Target == addr {
				return tg.Ejected
			}
		}
	}
	return false
}
