package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"candor/internal/fault"
)

// wsEcho is a WebSocket upstream that echoes every message.
func wsEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// adminJSON GETs an admin endpoint and decodes it.
func adminJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}

type status struct {
	Generation    int    `json:"generation"`
	ReloadsOK     int    `json:"reloads_ok"`
	ReloadsFailed int    `json:"reloads_failed"`
	LastError     string `json:"last_error"`
}

// waitStatus polls /status (bounded) until ok holds.
func waitStatus(t *testing.T, admin string, what string, ok func(status) bool) status {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var st status
		adminJSON(t, admin+"/status", &st)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: status stayed %+v", what, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writeConfig replaces the file atomically, as editors and deploy tools do.
func writeConfig(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestReloadUnderLoad reloads the real binary 20 times (alternating route
// and upstream changes, with two bad files in between) while a load
// generator runs, and asserts that no request failed and that a WebSocket
// on an unchanged route survived every reload.
func TestReloadUnderLoad(t *testing.T) {
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
	ws := wsEcho(t)

	dir := t.TempDir()
	path := filepath.Join(dir, "candor.yaml")
	gen := func(i int) string {
		extraRoute := ""
		if i%4 == 1 { // route change
			extraRoute = "  - {name: extra, match: {path_prefix: /extra/}, upstream: api}\n"
		}
		targets := `[{url: "` + a.URL() + `"}]`
		if i%4 == 2 || i%4 == 3 { // upstream change
			targets = `[{url: "` + a.URL() + `"}, {url: "` + b.URL() + `"}]`
		}
		return `listen: 127.0.0.1:0
admin: {listen: 127.0.0.1:0}
watch: false
routes:
  - {name: ws, match: {path_prefix: /ws}, upstream: ws, upgrade: {protocols: [websocket]}}
` + extraRoute + `  - {name: api, upstream: api}
upstreams:
  ws:
    targets: [{url: "` + ws + `"}]
  api:
    targets: ` + targets + `
`
	}
	writeConfig(t, path, gen(0))
	p := start(t, "run", "-c", path)
	m := waitFor(t, p, regexp.MustCompile(`"msg":"candor started".*"listen":"([0-9.:]+)".*"admin":"([0-9.:]+)"`))
	base, admin := "http://"+m[1], "http://"+m[2]

	// A WebSocket on the unchanged route, open across every reload.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, strings.Replace(base, "http", "ws", 1)+"/ws", nil)
	if err != nil {
		t.Fatalf("websocket through candor: %v", err)
	}
	defer conn.CloseNow()
	echo := func(i int) {
		t.Helper()
		msg := fmt.Sprintf("ping %d", i)
		if err := conn.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatalf("after reload %d: websocket write: %v", i, err)
		}
		_, got, err := conn.Read(ctx)
		if err != nil || string(got) != msg {
			t.Fatalf("after reload %d: websocket read %q, %v", i, got, err)
		}
	}
	echo(0)

	// The load generator: keep-alive clients, GET and POST, all the time.
	var sent, failed atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for w := range 4 {
		wg.Go(func() {
			for n := 0; n < 100_000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				var resp *http.Response
				var err error
				if (w+n)%3 == 0 {
					resp, err = client.Post(base+"/echo", "text/plain", strings.NewReader("payload"))
				} else {
					resp, err = client.Get(base + "/ok")
				}
				sent.Add(1)
				if err != nil {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("status %d", resp.StatusCode))
				}
			}
		})
	}

	bad := []string{
		"listen: 127.0.0.1:0\nroutes: [\n",                                 // syntax error
		strings.Replace(gen(0), "upstream: api}", "upstream: nowhere}", 1), // validation error
	}
	good := 0
	for i := 1; i <= 22; i++ {
		switch i {
		case 7, 15:
			writeConfig(t, path, bad[0])
			if i == 15 {
				writeConfig(t, path, bad[1])
			}
			p.cmd.Process.Signal(syscall.SIGHUP)
			waitStatus(t, admin, "bad file rejected", func(s status) bool { return s.ReloadsFailed == map[int]int{7: 1, 15: 2}[i] })
			echo(i)
			continue
		}
		good++
		writeConfig(t, path, gen(good))
		if good%2 == 0 {
			p.cmd.Process.Signal(syscall.SIGHUP)
		} else {
			resp, err := http.Post(admin+"/reload", "", nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("admin reload %d: %v %v", good, resp, err)
			}
			resp.Body.Close()
		}
		waitStatus(t, admin, fmt.Sprintf("reload %d", good), func(s status) bool { return s.Generation == good+1 })
		echo(i)
	}
	close(stop)
	wg.Wait()

	st := waitStatus(t, admin, "final", func(status) bool { return true })
	if good != 20 || st.Generation != 21 || st.ReloadsFailed != 2 || !strings.Contains(st.LastError, ":") {
		t.Fatalf("after 20 good and 2 bad reloads: good=%d status %+v", good, st)
	}
	t.Logf("%d requests during 22 reloads, %d failed", sent.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during reloads; first: %v", failed.Load(), sent.Load(), firstFailure.Load())
	}
	if sent.Load() < 100 {
		t.Fatalf("the load generator sent only %d requests", sent.Load())
	}
	// The bad files were logged with file, line and reason, and counted.
	if !regexp.MustCompile(`configuration rejected.*candor\.yaml:\d+: routes\[\d\]\.upstream: `).MatchString(p.stderr.String()) {
		t.Errorf("rejected file not logged with file:line: field: reason:\n%s", p.stderr.String())
	}
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`candor_config_reloads_total{result="failure"} 2`, `candor_config_reloads_total{result="success"} 21`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestReloadOnFileChange: with watch on, saving the file (by rename, as
// editors do) reloads it; a save that breaks it is rejected.
func TestReloadOnFileChange(t *testing.T) {
	up, err := fault.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	dir := t.TempDir()
	path := filepath.Join(dir, "candor.yaml")
	cfg := func(prefix string) string {
		return `listen: 127.0.0.1:0
admin: {listen: 127.0.0.1:0}
routes:
  - {name: api, match: {path_prefix: ` + prefix + `}, upstream: api}
upstreams:
  api:
    targets: [{url: "` + up.URL() + `"}]
`
	}
	writeConfig(t, path, cfg("/nothing/"))
	p := start(t, "run", "-c", path)
	m := waitFor(t, p, regexp.MustCompile(`"msg":"candor started".*"listen":"([0-9.:]+)".*"admin":"([0-9.:]+)"`))
	base, admin := "http://"+m[1], "http://"+m[2]
	if resp, err := http.Get(base + "/ok"); err != nil || resp.StatusCode != 404 {
		t.Fatalf("before: %v %v", resp, err)
	}
	writeConfig(t, path, cfg("/"))
	waitStatus(t, admin, "file change reloaded", func(s status) bool { return s.Generation == 2 })
	if resp, err := http.Get(base + "/ok"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("after: %v %v", resp, err)
	}
	writeConfig(t, path, "routes: {{{\n")
	waitStatus(t, admin, "broken save rejected", func(s status) bool { return s.ReloadsFailed == 1 })
	if resp, err := http.Get(base + "/ok"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("a broken save replaced the running configuration: %v %v", resp, err)
	}
	p.stop(t)
}

// TestMaintenanceAndDrain: a route put in maintenance through the admin
// API answers 503 route_maintenance with Retry-After, then recovers; a
// drained target gets no new requests; both also come from the file.
func TestMaintenanceAndDrain(t *testing.T) {
	a, _ := fault.NewServer()
	defer a.Close()
	b, _ := fault.NewServer()
	defer b.Close()
	dir := t.TempDir()
	path := filepath.Join(dir, "candor.yaml")
	cfg := func(maint, drainA bool) string {
		return fmt.Sprintf(`listen: 127.0.0.1:0
admin: {listen: 127.0.0.1:0}
watch: false
routes:
  - {name: api, upstream: api, maintenance: %v}
upstreams:
  api:
    targets: [{url: %q, drain: %v}, {url: %q}]
`, maint, a.URL(), drainA, b.URL())
	}
	writeConfig(t, path, cfg(false, false))
	p := start(t, "run", "-c", path)
	m := waitFor(t, p, regexp.MustCompile(`"msg":"candor started".*"listen":"([0-9.:]+)".*"admin":"([0-9.:]+)"`))
	base, admin := "http://"+m[1], "http://"+m[2]
	get := func() *http.Response {
		t.Helper()
		resp, err := http.Get(base + "/ok")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	post := func(url string) {
		t.Helper()
		resp, err := http.Post(admin+url, "", nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("POST %s: %v %v", url, resp, err)
		}
		resp.Body.Close()
	}

	post("/routes/api/maintenance?on=true")
	resp := get()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("maintenance: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	post("/routes/api/maintenance?on=false")
	if resp := get(); resp.StatusCode != 200 {
		t.Fatalf("after maintenance: %d", resp.StatusCode)
	}

	post("/upstreams/api/targets/0/drain?on=true")
	before := a.Requests()
	for range 20 {
		if resp := get(); resp.StatusCode != 200 {
			t.Fatalf("while draining: %d", resp.StatusCode)
		}
	}
	if a.Requests() != before {
		t.Fatalf("a drained target got %d requests", a.Requests()-before)
	}
	post("/upstreams/api/targets/0/drain?on=false")

	// The same from the file.
	writeConfig(t, path, cfg(true, false))
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitStatus(t, admin, "maintenance by file", func(s status) bool { return s.Generation == 2 })
	if resp := get(); resp.StatusCode != 503 {
		t.Fatalf("maintenance from the file: %d", resp.StatusCode)
	}
	writeConfig(t, path, cfg(false, true))
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitStatus(t, admin, "drain by file", func(s status) bool { return s.Generation == 3 })
	before = a.Requests()
	for range 20 {
		if resp := get(); resp.StatusCode != 200 {
			t.Fatalf("after maintenance from the file: %d", resp.StatusCode)
		}
	}
	if a.Requests() != before {
		t.Fatalf("a target drained by the file got %d requests", a.Requests()-before)
	}
	p.stop(t)
}

// TestLogOutputFile: log.output sends the structured log to a file.
func TestLogOutputFile(t *testing.T) {
	up, err := fault.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	dir := t.TempDir()
	logFile := filepath.Join(dir, "candor.log")
	path := filepath.Join(dir, "candor.yaml")
	writeConfig(t, path, `listen: 127.0.0.1:0
log: {output: candor.log, access: true}
routes:
  - {name: api, upstream: api}
upstreams:
  api:
    targets: [{url: "`+up.URL()+`"}]
`)
	p := start(t, "run", "-c", path)
	var addr string
	deadline := time.Now().Add(10 * time.Second)
	for addr == "" && time.Now().Before(deadline) {
		b, _ := os.ReadFile(logFile)
		if m := regexp.MustCompile(`"msg":"candor started".*"listen":"([0-9.:]+)"`).FindSubmatch(b); m != nil {
			addr = string(m[1])
		}
		time.Sleep(20 * time.Millisecond)
	}
	if addr == "" {
		t.Fatalf("no start record in %s; stderr: %s", logFile, p.stderr.String())
	}
	req, _ := http.NewRequest("GET", "http://"+addr+"/ok", nil)
	req.Header.Set("X-Request-Id", "to-file-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("request: %v %v", resp, err)
	}
	resp.Body.Close()
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
	b, _ := os.ReadFile(logFile)
	if !strings.Contains(string(b), `"request_id":"to-file-1"`) {
		t.Fatalf("access record not in the log file:\n%s", b)
	}
}
