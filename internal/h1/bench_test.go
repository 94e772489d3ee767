package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"
)

// benchHead is a typical browser-ish request head.
const benchHead = "GET /api/v1/items?page=2&sort=name HTTP/1.1\r\n" +
	"Host: bench.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36\r\n" +
	"Accept: application/json, text/plain, */*\r\n" +
	"Accept-Language: en-US,en;q=0.9\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"Cookie: session=0123456789abcdef; theme=dark\r\n" +
	"X-Request-Id: 7f3c2a1e-9b8d-4c6f-a5e4-3d2c1b0a9f8e\r\n" +
	"Connection: keep-alive\r\n\r\n"

// BenchmarkParseRequest parses and builds one request head, as the
// connection does for each request (the head's string is its one
// allocation).
func BenchmarkParseRequest(b *testing.B) {
	st := newReqState()
	st.bind(&conn{})
	st.remote = "192.0.2.1:1234"
	lim := newSettings(Config{}).lim
	raw := []byte(benchHead)
	buf := make([]byte, len(raw))
	r := new(http.Request)
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		copy(buf, raw) // the parser canonicalises names in place
		p := &st.p
		p.reset(lim)
		done, fe := p.feed(buf)
		if !done || fe != nil {
			b.Fatal(fe)
		}
		if fe := st.build(r, buf[:p.off]); fe != nil {
			b.Fatal(fe)
		}
	}
}

// benchHandler is the trivial handler both servers run: a 13-byte body
// with Content-Length, as the proxy answers with a length.
var benchHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Length", "13")
	w.Header()["Content-Type"] = nil
	io.WriteString(w, "hello, world\n")
})

// BenchmarkServe is one request and response over loopback, through h1
// and through net/http's server with the same handler. The client is a
// raw connection with a minimal parser, so that allocs/op and cpu-ns/op
// are mostly the server's.
func BenchmarkServe(b *testing.B) {
	b.Run("h1", func(b *testing.B) {
		ts := startServer(b, benchHandler, Config{})
		runServe(b, ts.addr)
	})
	b.Run("net-http", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: benchHandler, ReadHeaderTimeout: DefaultReadHeaderTimeout, IdleTimeout: DefaultIdleTimeout, WriteTimeout: DefaultWriteTimeout}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); srv.Serve(ln) }()
		b.Cleanup(func() { srv.Close(); wg.Wait() })
		runServe(b, ln.Addr().String())
	})
}

func runServe(b *testing.B, addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReaderSize(c, 16<<10)
	req := []byte(benchHead)
	for range 100 {
		if err := roundTrip(c, br, req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	cpu := cpuTime()
	for b.Loop() {
		if err := roundTrip(c, br, req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
}

var errBench = errors.New("unexpected response")

// roundTrip writes req and reads a 200 with Content-Length 13.
func roundTrip(c net.Conn, br *bufio.Reader, req []byte) error {
	if _, err := c.Write(req); err != nil {
		return err
	}
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return errBench
	}
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) == 2 {
			break
		}
	}
	_, err = br.Discard(13)
	return err
}

// cpuTime returns the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
