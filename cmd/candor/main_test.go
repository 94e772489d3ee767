package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"candor/internal/demo"
	"candor/internal/failure"
	"candor/internal/fault"
)

// binary is the candor binary built once for these tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "candor-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "candor")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		panic("building candor: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// candor runs the binary to completion (bounded) and returns its output.
func candor(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("candor %v did not finish", args)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

func TestVersion(t *testing.T) {
	out, _, code := candor(t, "version")
	if code != 0 || !strings.HasPrefix(out, "candor ") {
		t.Fatalf("version: %d %q", code, out)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(`listen: 127.0.0.1:8080
routes:
  - {name: api, upstream: api}
upstreams:
  api:
    targets: [{url: "http://127.0.0.1:9000"}]
`), 0o600)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`listen: 127.0.0.1:8080
routes:
  - name: api
    upstream: nowhere
upstreams:
  api:
    targets: [{url: "ftp://127.0.0.1:9000"}]
    timeouts: {connect: soon}
    colour: blue
`), 0o600)

	out, errOut, code := candor(t, "validate", good)
	if code != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("good file: %d %q %q", code, out, errOut)
	}
	_, errOut, code = candor(t, "validate", "-c", bad)
	if code != 1 {
		t.Fatalf("bad file exit %d, want 1; stderr %q", code, errOut)
	}
	// Every problem is reported with file:line: field: reason.
	for _, want := range []string{
		"bad.yaml:4: routes[0].upstream: ",
		"bad.yaml:7: upstreams.api.targets[0].url: ",
		"bad.yaml:8: upstreams.api.timeouts.connect: ",
		"bad.yaml:9: upstreams.api.colour: ",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	line := regexp.MustCompile(`^[^:]+bad\.yaml:\d+: [a-z_.\[\]0-9]+: .+$`)
	for l := range strings.SplitSeq(strings.TrimSpace(errOut), "\n") {
		if !line.MatchString(l) {
			t.Errorf("error line not in file:line: field: reason form: %q", l)
		}
	}
	if _, _, code := candor(t, "validate", filepath.Join(dir, "missing.yaml")); code != 1 {
		t.Fatalf("missing file exit %d", code)
	}
	if _, _, code := candor(t, "validate"); code != 2 {
		t.Fatalf("no file exit %d, want 2", code)
	}
}

func TestCauses(t *testing.T) {
	out, _, code := candor(t, "causes", "-json")
	if code != 0 {
		t.Fatal(code)
	}
	var rows []struct{ ID, Explanation, Fix string }
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(failure.Kinds()) {
		t.Fatalf("%d causes, want %d", len(rows), len(failure.Kinds()))
	}
	for i, k := range failure.Kinds() {
		if rows[i].ID != k.String() || rows[i].Explanation == "" || rows[i].Fix == "" {
			t.Fatalf("row %d: %+v", i, rows[i])
		}
	}
	text, _, _ := candor(t, "causes")
	if !strings.Contains(text, "upstream_connect_refused  502") {
		t.Fatalf("text table:\n%s", text)
	}
}

// process is a running candor.
type process struct {
	cmd    *exec.Cmd
	stdout *bufio.Reader
	stderr *lockedBuffer
	done   chan struct{} // closed when the process has exited
}

func start(t *testing.T, args ...string) *process {
	t.Helper()
	cmd := exec.Command(binary, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, stdout: bufio.NewReader(out), stderr: &lockedBuffer{wrote: make(chan struct{}, 1)}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// stop sends SIGTERM and returns the exit code.
func (p *process) stop(t *testing.T) int {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(35 * time.Second):
		t.Fatal("candor did not exit after SIGTERM")
		return -1
	}
}

// lockedBuffer is a buffer written by os/exec's copying goroutine and read
// by the test.
type lockedBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{} // buffered 1: signalled by every write
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case l.wrote <- struct{}{}:
	default:
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor polls the log (bounded) until re matches, returning the match.
func waitFor(t *testing.T, p *process, re *regexp.Regexp) []string {
	t.Helper()
	timeout := time.NewTimer(15 * time.Second)
	defer timeout.Stop()
	for {
		if m := re.FindStringSubmatch(p.stderr.String()); m != nil {
			return m
		}
		select {
		case <-p.stderr.wrote:
		case <-timeout.C:
			t.Fatalf("log never matched %s:\n%s", re, p.stderr.String())
			return nil
		}
	}
}

// TestRunAndDrain runs the real binary with a configuration file, proxies a
// request, and checks that SIGTERM lets an in-flight request finish.
func TestRunAndDrain(t *testing.T) {
	up, err := fault.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	cfg := filepath.Join(t.TempDir(), "candor.yaml")
	os.WriteFile(cfg, []byte(`listen: 127.0.0.1:0
admin: {listen: 127.0.0.1:0}
routes:
  - {name: all, upstream: u}
upstreams:
  u:
    targets: [{url: "`+up.URL()+`"}]
    timeouts: {response_header: 5s}
`), 0o600)
	p := start(t, "run", "-c", cfg)
	m := waitFor(t, p, regexp.MustCompile(`"msg":"candor started".*"listen":"([0-9.:]+)".*"admin":"([0-9.:]+)"`))
	base, admin := "http://"+m[1], "http://"+m[2]

	resp, err := http.Get(base + "/ok")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("proxied request: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = http.Get(admin + "/causes")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("admin causes: %v %v", resp, err)
	}
	resp.Body.Close()

	// An in-flight request (the upstream answers after 1 s) survives
	// SIGTERM.
	type result struct {
		status int
		close  bool // the response said Connection: close
		err    error
	}
	inflight := make(chan result, 1)
	go func() {
		resp, err := http.Get(base + "/stall-head?ms=1000")
		if err != nil {
			inflight <- result{0, false, err}
			return
		}
		resp.Body.Close()
		inflight <- result{resp.StatusCode, resp.Close, nil}
	}()
	waitForRequests(t, up, "/stall-head")
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit %d; log:\n%s", code, p.stderr.String())
	}
	if r := <-inflight; r.err != nil || r.status != 200 || !r.close {
		t.Fatalf("in-flight request during drain: %+v; want 200 with Connection: close", r)
	}
}

// waitForRequests waits (bounded) until the upstream received a request
// whose target starts with prefix.
func waitForRequests(t *testing.T, up *fault.Server, prefix string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range up.Received() {
			if strings.HasPrefix(r.Target, prefix) {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("upstream never received %s", prefix)
}

// TestDemo runs `candor demo` and executes every curl line it prints,
// checking the status and cause each one promises.
func TestDemo(t *testing.T) {
	p := start(t, "demo", "-listen", "127.0.0.1:0")
	first, err := p.stdout.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`gateway on (http://[0-9.:]+) `).FindStringSubmatch(first)
	if m == nil {
		t.Fatalf("first line %q", first)
	}
	base := m[1]
	examples := demo.Examples()
	seen := map[string]bool{}
	for _, e := range examples {
		seen[e.Cause] = true
		// The guide printed this exact line.
		line := e.Curl(base)
		guide := readUntil(t, p.stdout, line)
		if !strings.Contains(guide, line) {
			t.Fatalf("guide lacks %q", line)
		}
		req, _ := http.NewRequest("GET", base+e.Path, nil)
		if e.Host != "" {
			req.Host = e.Host
		}
		if e.Accept != "" {
			req.Header.Set("Accept", e.Accept)
		}
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		body, berr := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case e.Status == 0:
			if resp.StatusCode != 200 || berr == nil {
				t.Errorf("%s: %d, body error %v; want 200 cut off", line, resp.StatusCode, berr)
			}
		case resp.StatusCode != e.Status:
			t.Errorf("%s: status %d, want %d: %s", line, resp.StatusCode, e.Status, body)
		case e.Cause != "" && !bytes.Contains(body, []byte(`"cause":"`+e.Cause+`"`)) && !bytes.Contains(body, []byte(e.Cause)):
			t.Errorf("%s: body lacks cause %s: %s", line, e.Cause, body)
		}
	}
	for _, want := range []string{"", "upstream_connect_refused", "upstream_dns_failed", "upstream_response_timeout", "no_healthy_upstream", "upstream_malformed_header", "upstream_invalid_framing", "upstream_contract_violation"} {
		if !seen[want] {
			t.Errorf("demo shows no example of %q", want)
		}
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("demo exit %d", code)
	}
}

// readUntil reads lines until one contains s (bounded by the output).
func readUntil(t *testing.T, r *bufio.Reader, s string) string {
	t.Helper()
	var b strings.Builder
	for range 200 {
		line, err := r.ReadString('\n')
		b.WriteString(line)
		if strings.Contains(line, s) || err != nil {
			break
		}
	}
	return b.String()
}

// TestReadmeConfig keeps the README's full configuration example true: it
// must pass `candor validate` (with the CA file it names present).
func TestReadmeConfig(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "## Configuration")
	if !ok {
		t.Fatal("README has no Configuration section")
	}
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("README's Configuration section has no yaml block")
	}
	dir := t.TempDir()
	ca, err := os.ReadFile("../../internal/config/testdata/ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "certs"), 0o700)
	os.WriteFile(filepath.Join(dir, "certs", "ca.pem"), ca, 0o600)
	for from, to := range map[string]string{"tls.crt": "api.crt", "tls.key": "api.key"} {
		b, err := os.ReadFile("../../internal/config/testdata/" + from)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "certs", to), b, 0o600)
	}
	cfg := filepath.Join(dir, "candor.yaml")
	os.WriteFile(cfg, []byte(block), 0o600)
	if out, errOut, code := candor(t, "validate", cfg); code != 0 {
		t.Fatalf("README example does not validate: %s%s", out, errOut)
	}
}

// TestSystemdUnit checks deploy/candor.service with systemd's own verifier
// (pointing it at the binary under test) and that its commands are ones
// candor accepts: validate before start, run, SIGHUP for reload.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("../../deploy/candor.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ExecStartPre=/usr/local/bin/candor validate /etc/candor/candor.yaml",
		"ExecStart=/usr/local/bin/candor run -c /etc/candor/candor.yaml",
		"ExecReload=/bin/kill -HUP $MAINPID",
		"KillSignal=SIGTERM",
		"NoNewPrivileges=yes",
	} {
		if !strings.Contains(string(unit), want+"\n") {
			t.Errorf("unit lacks %q", want)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze not found: .ci/run installs systemd")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "candor.service")
	os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/candor", binary)), 0o644)
	cmd := exec.Command(analyze, "verify", path)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=warning")
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
