package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"candor/internal/fault"
)

// upstreamEnv, set to a loopback address ("127.0.0.1:0" for any port), makes
// the test binary a child upstream process instead of running tests: a
// fault.Server on that address, which the resilience tests kill with
// SIGKILL to take a target away the way a crash does.
const upstreamEnv = "CANDOR_TEST_UPSTREAM"

func TestMain(m *testing.M) {
	if addr, ok := os.LookupEnv(upstreamEnv); ok {
		os.Exit(serveChildUpstream(addr))
	}
	os.Exit(m.Run())
}

// serveChildUpstream runs a fault upstream on addr, prints "ready ADDR" on
// standard output and serves until killed, or until its standard input
// closes (the parent test process died without killing it).
func serveChildUpstream(addr string) int {
	s, err := fault.NewServerAt(addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child upstream:", err)
		return 1
	}
	fmt.Printf("ready %s\n", s.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	s.Close()
	return 0
}

// childReadyTimeout bounds the start of a child upstream process.
const childReadyTimeout = 20 * time.Second

// childUpstream is a fault upstream running in its own process.
type childUpstream struct {
	addr string
	cmd  *exec.Cmd
	once sync.Once
}

// startChild starts a child upstream process listening on addr
// ("127.0.0.1:0" for a new port) and waits (bounded) until it listens. The
// process is killed at the end of the test if it is still running.
func startChild(t *testing.T, addr string) *childUpstream {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), upstreamEnv+"="+addr)
	cmd.Stderr = os.Stderr
	if _, err := cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &childUpstream{cmd: cmd}
	t.Cleanup(c.kill)
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
	}()
	timer := time.NewTimer(childReadyTimeout)
	defer timer.Stop()
	select {
	case line := <-ready:
		a, ok := strings.CutPrefix(strings.TrimSpace(line), "ready ")
		if !ok {
			c.kill()
			t.Fatalf("child upstream on %s did not start: %q", addr, line)
		}
		c.addr = a
	case <-timer.C:
		c.kill()
		t.Fatalf("child upstream on %s not ready within %v", addr, childReadyTimeout)
	}
	return c
}

// url returns the child's base URL.
func (c *childUpstream) url() string { return "http://" + c.addr }

// kill sends SIGKILL to the child and reaps it; later calls do nothing.
func (c *childUpstream) kill() {
	c.once.Do(func() {
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
	})
}
