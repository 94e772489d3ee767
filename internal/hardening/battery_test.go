package hardening_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// want is one response the client must get.
type want struct {
	status int
	// cause is the problem+json cause of a gateway refusal; "" means the
	// upstream's own 200 (the request reached the upstream).
	cause string
	// method is the request's method when it matters to read the response
	// (HEAD); "" is GET.
	method string
}

// upReq is a request the upstream must receive: method, target, fields
// ("Name: value", Host included; own and framing fields are not compared,
// see shape) and decoded body.
type upReq struct {
	method, target string
	fields         []string
	body           string
}

// tcase is one battery case: raw bytes in, and everything the client and
// the upstream must see.
type tcase struct {
	name string
	// trusted runs the case against the gateway whose trusted_proxies
	// holds 127.0.0.0/8 (the test client is a trusted proxy); the others
	// run against one that trusts 10.0.0.0/8 only.
	trusted bool
	// send are the client's writes, in order.
	send []string
	// pause, when set, is waited between writes; the client stops
	// sending as soon as the gateway answers or closes.
	pause time.Duration
	// expect100: after send[0] (a head with Expect: 100-continue), the
	// client waits for "100 Continue" before it sends the rest.
	expect100 bool
	// halfClose closes the client's sending side after the writes.
	halfClose bool
	// want are the final responses, in order; none when the gateway must
	// answer nothing.
	want []want
	// closed: the gateway must close the connection after the responses
	// (checked by reading to EOF, bounded). Otherwise it must keep it
	// open, which a follow-up request on it checks.
	closed bool
	// up is exactly what the upstream must receive, in order.
	up []upReq
	// partialOK allows requests the upstream began to receive but never
	// received completely (a body that broke while it was forwarded).
	partialOK bool
	// check, when set, checks the fields of what the upstream received
	// beyond the comparison of shapes (the forwarding fields).
	check func(t *testing.T, reqs []received)
}

// env is a gateway in front of its own recording upstream.
type env struct {
	gw *gateway
	up *upstream
}

func newEnv(tb testing.TB, trusted string) *env {
	up := startUpstream(tb)
	return &env{gw: startGateway(tb, batteryConfig(up.url(), trusted)), up: up}
}

// TestBattery runs every hostile or malformed request of the battery
// against the real gateway.
func TestBattery(t *testing.T) {
	cases := battery()
	if len(cases) < 60 {
		t.Fatalf("the battery has %d cases, want at least 60", len(cases))
	}
	seen := map[string]bool{}
	for _, tc := range cases {
		if seen[tc.name] {
			t.Fatalf("two cases named %s", tc.name)
		}
		seen[tc.name] = true
	}
	untrusted, trusted := newEnv(t, "10.0.0.0/8"), newEnv(t, "127.0.0.0/8")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := untrusted
			if tc.trusted {
				e = trusted
			}
			e.run(t, tc)
		})
	}
}

const (
	followUp = "GET /follow-up HTTP/1.1\r\nHost: follow.test\r\n\r\n"
	probe    = "GET /probe HTTP/1.1\r\nHost: probe.test\r\nConnection: close\r\n\r\n"
)

var (
	followUpReq = upReq{method: "GET", target: "/follow-up", fields: []string{"Host: follow.test"}}
	probeReq    = upReq{method: "GET", target: "/probe", fields: []string{"Host: probe.test"}}
)

// run plays one case: the client's bytes, then the responses, then whether
// the connection stays open (a follow-up request on it) or closes (EOF),
// then a probe request on a new connection (the gateway still works), and
// finally what the upstream received: exactly the case's requests, the
// follow-up and the probe, in that order, each matched to the response
// that carried its X-Seq.
func (e *env) run(t *testing.T, tc tcase) {
	e.up.take()
	mark := e.gw.log.mark()
	defer func() {
		if t.Failed() {
			t.Logf("gateway log during the case:\n%s", e.gw.log.since(mark))
		}
	}()

	c := dial(t, e.gw.addr)
	defer c.Close()
	br := bufio.NewReader(c)
sending:
	for i, s := range tc.send {
		if i > 0 {
			switch {
			case tc.expect100 && i == 1:
				resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
				if err != nil {
					t.Fatalf("waiting for 100 Continue: %v", err)
				}
				resp.Body.Close()
				if resp.StatusCode != 100 {
					t.Fatalf("got %d before the body was sent, want 100 Continue", resp.StatusCode)
				}
			case tc.pause > 0 && waitReadable(c, br, tc.pause):
				break sending // the gateway answered or closed: stop sending
			}
		}
		if _, err := io.WriteString(c, s); err != nil {
			if !tc.closed {
				t.Fatalf("write %d: %v", i, err)
			}
			break sending
		}
	}
	if tc.halfClose {
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
	}
	var got []*response
	for i, w := range tc.want {
		method := w.method
		if method == "" {
			method = "GET"
		}
		r, interim, err := readResponse(br, method)
		if err != nil {
			t.Fatalf("response %d: %v; want %d %s", i+1, err, w.status, w.cause)
		}
		if len(interim) > 0 {
			t.Errorf("response %d: unexpected interim responses %v", i+1, interim)
		}
		checkResponse(t, i+1, r, w)
		got = append(got, r)
	}

	// RFC 9112 §9.6: the response after which the server closes says
	// so; the others do not.
	for i, r := range got {
		if last := i == len(got)-1 && tc.closed; r.close != last {
			t.Errorf("response %d says the connection closes: %v; it %s after it", i+1, r.close,
				map[bool]string{true: "closes", false: "stays open"}[last])
		}
	}

	wantUp := slices.Clone(tc.up)
	if tc.closed {
		extra, err := readToEOF(c, br, closeWait)
		if err != nil {
			t.Errorf("the connection must be closed after the responses; reading: %v (after %q)", err, extra)
		} else if len(extra) > 0 {
			t.Errorf("unexpected bytes after the responses: %q", extra)
		}
	} else {
		if _, err := io.WriteString(c, followUp); err != nil {
			t.Fatalf("the connection must stay open; follow-up request: %v", err)
		}
		r, _, err := readResponse(br, "GET")
		if err != nil {
			t.Fatalf("the connection must stay open; follow-up response: %v", err)
		}
		checkResponse(t, len(tc.want)+1, r, want{status: 200})
		got = append(got, r)
		wantUp = append(wantUp, followUpReq)
	}
	c.Close()

	// The gateway still works, on a new connection.
	pc := dial(t, e.gw.addr)
	defer pc.Close()
	if _, err := io.WriteString(pc, probe); err != nil {
		t.Fatalf("probe: %v", err)
	}
	pbr := bufio.NewReader(pc)
	r, _, err := readResponse(pbr, "GET")
	if err != nil {
		t.Fatalf("probe on a new connection after the case: %v", err)
	}
	checkResponse(t, 0, r, want{status: 200})
	got = append(got, r)
	wantUp = append(wantUp, probeReq)

	if !e.up.waitIdle(closeWait) {
		t.Errorf("an upstream connection was left in the middle of a request for %v", closeWait)
	}
	reqs, partial, violations := e.up.take()
	t.Logf("the upstream received %d requests and %d incomplete ones", len(reqs), partial)
	for _, v := range violations {
		t.Errorf("the upstream received bytes a strict HTTP/1.1 server refuses: %s", v)
	}
	if partial > 0 && !tc.partialOK {
		t.Errorf("the upstream received %d incomplete requests", partial)
	}
	compareUpstream(t, reqs, wantUp)

	// Each upstream request was answered to the client, in order.
	var seqs, recSeqs []int
	for _, r := range got {
		if r.seq != 0 {
			seqs = append(seqs, r.seq)
		}
	}
	for _, r := range reqs {
		recSeqs = append(recSeqs, r.seq)
	}
	if !slices.Equal(seqs, recSeqs) {
		t.Errorf("responses carried upstream requests %v, the upstream received %v", seqs, recSeqs)
	}
	if tc.check != nil && len(reqs) >= len(tc.up) {
		tc.check(t, reqs[:len(tc.up)])
	}
}

// checkResponse checks response n against w.
func checkResponse(t *testing.T, n int, r *response, w want) {
	t.Helper()
	what := "response " + strconv.Itoa(n)
	if n == 0 {
		what = "probe response"
	}
	if r.status != w.status || r.cause != w.cause {
		t.Errorf("%s: got %s, want %d %s; body %q", what, r, w.status, w.cause, r.body)
		return
	}
	if w.cause == "" {
		body := "ok"
		if w.method == "HEAD" {
			body = ""
		}
		if r.seq == 0 || string(r.body) != body {
			t.Errorf("%s: %d %q is not the upstream's answer", what, r.status, r.body)
		}
	} else if r.seq != 0 {
		t.Errorf("%s: a refusal carries the upstream's X-Seq %d", what, r.seq)
	}
}

// compareUpstream checks that the upstream received exactly want, in
// order.
func compareUpstream(t *testing.T, got []received, want []upReq) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = sameRequest(got[i], want[i])
	}
	if ok {
		return
	}
	var b strings.Builder
	b.WriteString("the upstream received:")
	for _, r := range got {
		b.WriteString("\n  " + r.String())
	}
	b.WriteString("\nwant:")
	for _, w := range want {
		b.WriteString("\n  " + w.method + " " + w.target + " " + strconv.Quote(strings.Join(w.fields, " | ")) + " body " + strconv.Quote(w.body))
	}
	t.Error(b.String())
}

func sameRequest(g received, w upReq) bool {
	return g.method == w.method && g.target == w.target && g.version == "HTTP/1.1" &&
		string(g.body) == w.body && len(g.trailers) == 0 &&
		slices.Equal(shape(g.fields), shape(parseFields(w.fields)))
}
