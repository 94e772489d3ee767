package hardening_test

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"candor/internal/config"
)

// Fuzz settings: the server's default limits (which the reference applies
// as the server counts them) and short timeouts, so that every connection ends quickly: the
// gateway closes it after an idle keep-alive, a stalled head or a stalled
// body.
const (
	maxFuzzInput = 64 << 10
	fuzzTimeout  = 100 * time.Millisecond
	// fuzzCloseWait bounds the wait for the gateway to close a fuzz
	// connection: 30 times its longest timeout.
	fuzzCloseWait = 3 * time.Second
	// maxFuzzResponses bounds the responses read on one connection.
	maxFuzzResponses = 256
)

var fuzzLimits = refLimits{
	maxLine:        int(config.DefaultMaxRequestLine),
	maxHeaderBytes: int(config.DefaultMaxHeaderBytes),
	maxFields:      config.DefaultMaxHeaderFields,
}

func fuzzConfig(up string) string {
	return `listen: 127.0.0.1:0
log: {level: error}
server:
  read_header_timeout: ` + fuzzTimeout.String() + `
  body_timeout: ` + fuzzTimeout.String() + `
  idle_timeout: ` + fuzzTimeout.String() + `
routes:
  - name: main
    upstream: u
upstreams:
  u:
    targets: [{url: "` + up + `"}]
    timeouts: {connect: 1s, response_header: 2s, idle: 2s}
`
}

// FuzzGateway writes arbitrary bytes to the gateway on one connection,
// reads every response until the gateway closes the connection, and checks
// the invariant that makes request smuggling through candor impossible:
//
//   - every request the upstream received was answered to the client, and
//     the upstream received no more requests than the client got answers;
//   - the i-th response carries the upstream's answer only if the decision
//     table (the reference) accepts the i-th request of the bytes, and the
//     upstream received that request in the same shape: method, target,
//     Host, the body decoded from its framing, and the fields minus
//     hop-by-hop ones and candor's own;
//   - the upstream, a strict HTTP/1.1 server, never received bytes it must
//     refuse.
//
// The seed corpus (testdata/fuzz/FuzzGateway) holds every battery case;
// TestFuzzCorpus keeps it in step with the battery.
func FuzzGateway(f *testing.F) {
	up := startUpstream(f)
	gw := startGateway(f, fuzzConfig(up.url()))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzInput {
			return
		}
		fuzzOne(t, gw, up, data)
	})
}

func fuzzOne(t *testing.T, gw *gateway, up *upstream, data []byte) {
	up.take()
	ref := reference(data, fuzzLimits)
	c := dial(t, gw.addr)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(fuzzCloseWait))
	// The gateway may close before it has read everything (after a
	// refusal); a failed write is no failure.
	_, _ = c.Write(data)

	br := bufio.NewReader(c)
	var finals []*response
	var readErr error
	for i := range maxFuzzResponses {
		method := "GET"
		switch {
		case i < len(ref.reqs):
			method = ref.reqs[i].method
		case i == len(ref.reqs) && ref.method != "":
			method = ref.method
		}
		// A clean end between responses is the gateway closing the
		// connection; an end inside one is a cut response.
		_, err := br.Peek(1)
		var r *response
		if err == nil {
			r, _, err = readResponse(br, method)
		}
		if err != nil {
			switch {
			case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
			case errors.Is(err, os.ErrDeadlineExceeded):
				readErr = fmt.Errorf("the gateway kept the connection open for %v, with timeouts of %v", fuzzCloseWait, fuzzTimeout)
			default:
				readErr = fmt.Errorf("response %d: %w", i+1, err)
			}
			break
		}
		finals = append(finals, r)
	}
	c.Close()
	if !up.waitIdle(closeWait) {
		t.Errorf("an upstream connection was left in the middle of a request for %v", closeWait)
	}
	reqs, _, violations := up.take()
	for _, v := range violations {
		t.Errorf("the upstream received bytes a strict HTTP/1.1 server refuses: %s", v)
	}
	checkInvariant(t, ref, finals, reqs)
	if readErr != nil {
		t.Errorf("reading the gateway's responses: %v", readErr)
	}
	if t.Failed() {
		t.Logf("input %q\nreference: %d accepted requests, then %s %s", data, len(ref.reqs), ref.end, ref.cause)
		for i, r := range finals {
			t.Logf("response %d: %s", i+1, r)
		}
	}
}

// checkInvariant matches the client's responses with what the upstream
// received and with the reference's reading of the request bytes.
func checkInvariant(t *testing.T, ref refResult, finals []*response, reqs []received) {
	t.Helper()
	bySeq := map[int]int{}
	for k, r := range reqs {
		bySeq[r.seq] = k
	}
	answered := make([]bool, len(reqs))
	for i, r := range finals {
		if r.seq == 0 {
			continue // the gateway's own answer: nothing was forwarded
		}
		k, ok := bySeq[r.seq]
		if !ok {
			t.Errorf("response %d carries X-Seq %d, a request the upstream never completed", i+1, r.seq)
			continue
		}
		answered[k] = true
		if i >= len(ref.reqs) {
			t.Errorf("response %d answers a request the gateway forwarded, but the decision table does not accept request %d (%s %s); the upstream received:\n  %s",
				i+1, i+1, ref.end, ref.cause, reqs[k])
			continue
		}
		if d := diffShape(reqs[k], ref.reqs[i]); d != "" {
			t.Errorf("request %d reached the upstream in another shape: %s\n  upstream received: %s", i+1, d, reqs[k])
		}
		if r.status != 200 {
			t.Errorf("response %d: status %d, the upstream answered 200", i+1, r.status)
		}
	}
	for k, a := range answered {
		if !a {
			t.Errorf("the upstream received a request the client got no answer for:\n  %s", reqs[k])
		}
	}
}

// diffShape describes how what the upstream received differs from the
// reference's request, or returns "".
func diffShape(u received, r refReq) string {
	var d []string
	if u.method != r.method {
		d = append(d, fmt.Sprintf("method %q, want %q", u.method, r.method))
	}
	if got, want := u.target, r.target; r.absolute && normalTarget(got) != normalTarget(want) || !r.absolute && got != want {
		d = append(d, fmt.Sprintf("target %q, want %q", got, want))
	}
	if h := values(u.fields, "Host"); len(h) != 1 || !strings.EqualFold(h[0], r.host) {
		d = append(d, fmt.Sprintf("Host %q, want %q", h, r.host))
	}
	if !bytes.Equal(u.body, r.body) {
		d = append(d, fmt.Sprintf("body %q, want %q", u.body, r.body))
	}
	if len(u.trailers) > 0 {
		d = append(d, fmt.Sprintf("trailer fields %q were forwarded", u.trailers))
	}
	if got, want := receivedShape(u.fields), r.forwardedShape(); !slices.Equal(got, want) {
		d = append(d, fmt.Sprintf("fields %q, want %q", got, want))
	}
	return strings.Join(d, "; ")
}

// normalTarget is the path and query of an absolute-form target as a
// gateway may rewrite it into origin-form: the fragment dropped (a URI
// reference's, never part of a request, RFC 9110 §4.2.5) and the path
// percent-decoded (the same resource, RFC 3986 §6.2.2.2).
func normalTarget(t string) string {
	t, _, _ = strings.Cut(t, "#")
	p, q, hasQ := strings.Cut(t, "?")
	if u, err := url.PathUnescape(p); err == nil {
		p = u
	}
	if hasQ {
		return p + "?" + q
	}
	return p
}

// updateCorpus rewrites the battery's seeds in testdata/fuzz/FuzzGateway.
var updateCorpus = flag.Bool("update-corpus", false, "write every battery case as a seed of FuzzGateway")

// corpusDir holds FuzzGateway's seed corpus.
const corpusDir = "testdata/fuzz/FuzzGateway"

// TestFuzzCorpus checks that every battery case is a seed of FuzzGateway,
// byte for byte (with -update-corpus, it writes them).
func TestFuzzCorpus(t *testing.T) {
	unsafe := regexp.MustCompile(`[^a-z0-9.-]+`)
	for _, tc := range battery() {
		data := []byte(strings.Join(tc.send, ""))
		path := filepath.Join(corpusDir, "battery-"+unsafe.ReplaceAllString(tc.name, "-"))
		content := "go test fuzz v1\n[]byte(" + strconv.Quote(string(data)) + ")\n"
		if *updateCorpus {
			if err := os.MkdirAll(corpusDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Errorf("%s is not the seed of case %s (err %v); run go test -run TestFuzzCorpus -update-corpus", path, tc.name, err)
		}
	}
}
