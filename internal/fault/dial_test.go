package fault

import (
	"errors"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"
)

func TestRefusedAddr(t *testing.T) {
	addr, err := RefusedAddr()
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err == nil {
		c.Close()
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial %s: %v; want ECONNREFUSED", addr, err)
	}
}

func TestBacklogFull(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("NewBacklogFull works on Linux only")
	}
	b, err := NewBacklogFull()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	for range 3 {
		start := time.Now()
		c, err := net.DialTimeout("tcp", b.Addr(), 300*time.Millisecond)
		if err == nil {
			c.Close()
		}
		if !isTimeout(err) {
			t.Fatalf("dial %s: %v; want a timeout", b.Addr(), err)
		}
		if d := time.Since(start); d < 250*time.Millisecond {
			t.Errorf("dial failed after %v, before its timeout", d)
		}
	}
}
