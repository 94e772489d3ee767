package h1

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestDrainBoundsChunkFraming: a handler answers without reading a chunked
// body made of 1-byte chunks, each with a long extension. Its data is far
// under maxDiscard, but its framing is megabytes: the server gives up the
// drain after maxDiscardReads chunks and closes, rather than reading all
// of it to keep the connection (the second request is never served).
func TestDrainBoundsChunkFraming(t *testing.T) {
	var second atomic.Bool
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/second" {
			second.Store(true)
		}
		io.WriteString(w, "ok")
	})
	ts := startServer(t, h, Config{BodyTimeout: 5 * time.Second})
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	var req bytes.Buffer
	req.WriteString("POST /first HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
	ext := strings.Repeat("x", 2000)
	for range maxDiscardReads + 100 {
		req.WriteString("1;e=" + ext + "\r\na\r\n")
	}
	req.WriteString("0\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\n\r\n")
	go nc.Write(req.Bytes()) // the server may stop reading: never wait on it
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("first response: %v", err)
	}
	io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("first response %d, want 200", resp.StatusCode)
	}
	if resp, err := http.ReadResponse(br, nil); err == nil {
		t.Errorf("a second response (%d) came: the drain read all %d chunks of framing", resp.StatusCode, maxDiscardReads+100)
	}
	if second.Load() {
		t.Error("the second request was served after a drain of megabytes of chunk framing")
	}
}
