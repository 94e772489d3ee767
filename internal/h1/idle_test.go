package h1

import (
	"bufio"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestIdleMemory measures what idle keep-alive connections cost: it
// serves CANDOR_IDLE_CONNS connections (skipped when unset) as candor's
// listener does (ServeConnAsync), makes one request on each, lets them
// go idle and reports the memory per connection: Go heap in use, stacks,
// other runtime memory, and the process's RSS. Client and server share
// the process, so the client's sockets are counted too (a bound). The
// whole-process figure for candor itself comes from bench/idleconns
// (README "Limits and timeouts").
//
//	CANDOR_IDLE_CONNS=9000 go test -run TestIdleMemory -v ./internal/h1
func TestIdleMemory(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("CANDOR_IDLE_CONNS"))
	if n <= 0 {
		t.Skip("set CANDOR_IDLE_CONNS to the number of connections")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := &Server{Handler: benchHandler}
	defer s.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.ServeConnAsync(c, func() {})
		}
	}()
	before, rss0 := memNow(), rssKiB()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	req := []byte(benchHead)
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if err := roundTrip(c, bufio.NewReaderSize(c, 512), req); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(4 * hotIdle)
	after, rss1 := memNow(), rssKiB()
	per := func(a, b uint64) float64 { return float64(int64(b)-int64(a)) / float64(n) }
	t.Logf("%d idle connections, per connection: heap in use %.0f B, stacks %.0f B, other runtime %.0f B, RSS %.0f B; goroutines %d",
		n, per(before.HeapInuse, after.HeapInuse), per(before.StackInuse, after.StackInuse),
		per(before.MSpanInuse+before.OtherSys+before.GCSys, after.MSpanInuse+after.OtherSys+after.GCSys),
		float64(rss1-rss0)*1024/float64(n), runtime.NumGoroutine())
}

func memNow() runtime.MemStats {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

// rssKiB returns the process's resident set (Linux), or 0.
func rssKiB() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}
