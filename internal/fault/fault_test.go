package fault

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// testTimeout bounds every network wait in the tests.
const testTimeout = 10 * time.Second

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := leakedGoroutines(); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines of package fault still running after all tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// leakedGoroutines returns the stacks of goroutines running a function of
// this package (ignoring "created by" lines and TestMain itself). Every Close
// waits for its goroutines, so after all cleanups there must be none; the
// short poll only lets goroutines that already signalled Done unwind.
func leakedGoroutines() string {
	deadline := time.Now().Add(2 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			for _, line := range strings.Split(g, "\n") {
				if strings.HasPrefix(line, "candor/internal/fault.") && !strings.HasPrefix(line, "candor/internal/fault.TestMain") &&
					!strings.HasPrefix(line, "candor/internal/fault.leakedGoroutines") {
					leaked = append(leaked, g)
					break
				}
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond)
	}
}

// startServer starts a plaintext fake upstream closed at the end of the test.
func startServer(t *testing.T) *Server {
	t.Helper()
	s, err := NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// dial connects to addr with a deadline of testTimeout; the connection is
// closed at the end of the test.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(testTimeout)); err != nil {
		t.Fatal(err)
	}
	return c
}

// exchange writes req on a new connection to addr and returns every byte
// read until the server closes the connection, and the error that ended the
// read (nil for a clean EOF).
func exchange(t *testing.T, addr, req string) ([]byte, error) {
	t.Helper()
	c := dial(t, addr)
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	_, err := io.Copy(&got, c)
	return got.Bytes(), err
}

// get returns a GET request for target that asks the server to close.
func get(target string) string {
	return "GET " + target + " HTTP/1.1\r\nHost: upstream.test\r\nConnection: close\r\n\r\n"
}

// waitFor polls cond, which reads a counter that has no event to wait on,
// until it holds or testTimeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func isTimeout(err error) bool {
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}
