// Command idleconns holds many idle keep-alive client connections open
// against an HTTP/1.1 server, for bench/compare.sh's memory measurement.
//
// It opens -n connections to -addr (at most -parallel being set up at once),
// sends one GET on each and reads the whole response, so that every
// connection is an ordinary keep-alive connection that has served a request
// and now sits idle. When all are open it prints "ready N" on standard
// output and waits; on SIGTERM or SIGINT it closes them all, prints
// "closed N" and exits 0. Any failure exits 1 with the reason on standard
// error (the first few failed connections are reported).
//
//	idleconns -addr 127.0.0.1:8080 -n 10000 -path /small
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "server address host:port")
	n := flag.Int("n", 10000, "connections to open")
	path := flag.String("path", "/", "request path")
	host := flag.String("host", "", "Host header (default: -addr)")
	parallel := flag.Int("parallel", 64, "connections being set up at once")
	timeout := flag.Duration("timeout", 10*time.Second, "per-connection dial + request timeout")
	flag.Parse()
	if *host == "" {
		*host = *addr
	}
	req := []byte(fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: candor-bench-idleconns\r\n\r\n", *path, *host))

	conns := make([]net.Conn, *n)
	var failed atomic.Int64
	var mu sync.Mutex
	var errs []error
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < *parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				c, err := open(*addr, req, *timeout)
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if len(errs) < 5 {
						errs = append(errs, fmt.Errorf("connection %d: %w", i, err))
					}
					mu.Unlock()
					continue
				}
				conns[i] = c
			}
		}()
	}
	start := time.Now()
	for i := 0; i < *n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	if f := failed.Load(); f > 0 {
		for _, e := range errs {
			fmt.Fprintln(os.Stderr, "idleconns:", e)
		}
		fmt.Fprintf(os.Stderr, "idleconns: %d of %d connections failed\n", f, *n)
		closeAll(conns)
		os.Exit(1)
	}
	fmt.Printf("ready %d (%.1fs)\n", *n, time.Since(start).Seconds())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	closed := closeAll(conns)
	fmt.Printf("closed %d\n", closed)
}

// open dials addr, sends req and reads one whole response, leaving the
// connection open for reuse.
func open(addr string, req []byte, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(c, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		c.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	if resp.Close {
		c.Close()
		return nil, errors.New("server closed the connection (no keep-alive)")
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

func closeAll(conns []net.Conn) int {
	n := 0
	for _, c := range conns {
		if c != nil {
			c.Close()
			n++
		}
	}
	return n
}
