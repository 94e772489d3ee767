package proxy_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// seenRequest is a request as a recording upstream received it.
type seenRequest struct {
	Method, Target string
	// Fields are the header fields in the order received, names as sent.
	Fields [][2]string
	Body   []byte
	// Complete reports that the whole request arrived: the head and the
	// body up to its Content-Length or its last chunk. An incomplete
	// request is recorded when its connection ends (or breaks) first.
	Complete bool
	// Err says what broke an incomplete request.
	Err string
}

// values returns the values of the fields named name (case-insensitive).
func (r *seenRequest) values(name string) []string {
	var out []string
	for _, f := range r.Fields {
		if strings.EqualFold(f[0], name) {
			out = append(out, f[1])
		}
	}
	return out
}

// recordingUpstream is a raw TCP upstream on 127.0.0.1 that parses each
// request itself (no net/http between it and candor), records exactly what
// arrived, and answers "200 ok", keeping connections alive.
type recordingUpstream struct {
	ln    net.Listener
	mu    sync.Mutex
	reqs  []seenRequest
	conns int
	// ended counts connections that ended (closed by either side).
	ended int
	note  chan struct{} // buffered 1: "something was recorded or ended"
	wg    sync.WaitGroup
	open  map[net.Conn]bool
	close sync.Once
	// early, when set before the first request, answers each request as
	// soon as its head arrived, before reading its body (as an upstream
	// that refuses an upload does).
	early bool
}

func startRecording(t *testing.T) *recordingUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &recordingUpstream{ln: ln, note: make(chan struct{}, 1), open: map[net.Conn]bool{}}
	u.wg.Add(1)
	go u.accept()
	t.Cleanup(u.stop)
	return u
}

func (u *recordingUpstream) url() string { return "http://" + u.ln.Addr().String() }

func (u *recordingUpstream) stop() {
	u.close.Do(func() {
		u.ln.Close()
		u.mu.Lock()
		for c := range u.open {
			c.Close()
		}
		u.mu.Unlock()
		u.wg.Wait()
	})
}

func (u *recordingUpstream) accept() {
	defer u.wg.Done()
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		u.mu.Lock()
		u.conns++
		u.open[c] = true
		u.mu.Unlock()
		u.wg.Add(1)
		go u.serve(c)
	}
}

func (u *recordingUpstream) record(r seenRequest) {
	u.mu.Lock()
	u.reqs = append(u.reqs, r)
	u.mu.Unlock()
	select {
	case u.note <- struct{}{}:
	default:
	}
}

// serve reads requests from c until it closes, each bounded by 10 s.
func (u *recordingUpstream) serve(c net.Conn) {
	defer u.wg.Done()
	defer func() {
		u.mu.Lock()
		delete(u.open, c)
		u.ended++
		u.mu.Unlock()
		c.Close()
		select {
		case u.note <- struct{}{}:
		default:
		}
	}()
	br := bufio.NewReader(c)
	for range 100 {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		line, err := br.ReadString('\n')
		if err != nil {
			if line != "" {
				u.record(seenRequest{Err: "request line: " + err.Error()})
			}
			return
		}
		parts := strings.SplitN(strings.TrimRight(line, "\r\n"), " ", 3)
		r := seenRequest{Method: parts[0]}
		if len(parts) > 1 {
			r.Target = parts[1]
		}
		if err := readFields(br, &r); err != nil {
			r.Err = "head: " + err.Error()
			u.record(r)
			return
		}
		if u.early {
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly"); err != nil {
				return
			}
		}
		if err := readBody(br, &r); err != nil {
			r.Err = err.Error()
			u.record(r)
			return
		}
		r.Complete = true
		u.record(r)
		if u.early {
			continue
		}
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
			return
		}
	}
}

// readBody reads r's body as its framing says (chunked, Content-Length or
// none) into r.Body.
func readBody(br *bufio.Reader, r *seenRequest) error {
	te, cl := r.values("Transfer-Encoding"), r.values("Content-Length")
	switch {
	case len(te) > 0:
		b, err := io.ReadAll(httputil.NewChunkedReader(br))
		r.Body = b
		if err != nil {
			return errors.New("chunked body: " + err.Error())
		}
		// The trailer section ends with an empty line.
		if err := readFields(br, &seenRequest{}); err != nil {
			return errors.New("trailer: " + err.Error())
		}
	case len(cl) == 1:
		n, err := strconv.ParseInt(cl[0], 10, 64)
		if err != nil {
			return errors.New("Content-Length: " + err.Error())
		}
		b, err := io.ReadAll(io.LimitReader(br, n))
		r.Body = b
		if err == nil && int64(len(b)) < n {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return errors.New("body: " + err.Error())
		}
	case len(cl) > 1:
		return errors.New("several Content-Length fields")
	}
	return nil
}

// readFields reads header (or trailer) field lines up to the empty line.
func readFields(br *bufio.Reader, r *seenRequest) error {
	for range 200 {
		line, err := br.ReadString('\n')
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return nil
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return errors.New("field without colon: " + strconv.Quote(line))
		}
		r.Fields = append(r.Fields, [2]string{name, strings.Trim(value, " \t")})
	}
	return errors.New("too many fields")
}

// requests returns what was recorded so far.
func (u *recordingUpstream) requests() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenRequest(nil), u.reqs...)
}

// connections returns the number of connections accepted so far.
func (u *recordingUpstream) connections() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.conns
}

// wait waits (bounded) until n requests were recorded and returns them.
func (u *recordingUpstream) wait(t *testing.T, n int) []seenRequest {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		if got := u.requests(); len(got) >= n {
			return got
		}
		select {
		case <-u.note:
		case <-timeout.C:
			t.Fatalf("upstream recorded %d requests, want %d: %+v", len(u.requests()), n, u.requests())
		}
	}
}

// waitClosed waits (bounded) until n connections ended.
func (u *recordingUpstream) waitClosed(t *testing.T, n int) {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		u.mu.Lock()
		ended, conns := u.ended, u.conns
		u.mu.Unlock()
		if ended >= n {
			return
		}
		select {
		case <-u.note:
		case <-timeout.C:
			t.Fatalf("%d of %d upstream connections ended, want %d", ended, conns, n)
		}
	}
}

// exchangeResult is a response read from a raw connection to the gateway.
type exchangeResult struct {
	resp *http.Response
	body []byte
	c    net.Conn
	br   *bufio.Reader
	// continues counts the 100 Continue responses before it.
	continues int
}

// rawExchange sends raw request bytes to the gateway at addr and reads one
// final response (skipping 100 Continue), all within 10 s. The connection
// is closed at the end of the test.
func rawExchange(t *testing.T, addr, req string) *exchangeResult {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	e := &exchangeResult{c: c, br: br}
	for range 3 {
		e.resp, err = http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("reading the response: %v", err)
		}
		if e.resp.StatusCode != http.StatusContinue {
			break
		}
		e.continues++
	}
	if e.body, err = io.ReadAll(e.resp.Body); err != nil {
		t.Fatalf("reading the response body: %v", err)
	}
	return e
}

// closed reports whether the gateway closed the connection after the
// response: the next read ends (EOF or reset) rather than timing out after
// 10 s. Call it only where the gateway should close: a connection kept
// alive costs the whole wait.
func (e *exchangeResult) closed() bool {
	e.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := e.br.ReadByte()
	if err == nil {
		return false
	}
	ne, ok := errors.AsType[net.Error](err)
	return !ok || !ne.Timeout()
}
