package failure

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTableComplete checks every row of the cause table: a unique
// snake_case id, a status in candor's status map, a phase, client strings
// that name nothing internal, and an explanation and a fix for operators.
func TestTableComplete(t *testing.T) {
	id := regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)+$`)
	seen := map[string]Kind{}
	allowed := map[int]bool{400: true, 404: true, 408: true, 413: true, 414: true, 431: true, 499: true, 500: true, 501: true, 502: true, 503: true, 504: true, 505: true}
	for _, k := range Kinds() {
		r := k.Row()
		t.Run(r.ID, func(t *testing.T) {
			if !id.MatchString(r.ID) {
				t.Errorf("id %q is not snake_case", r.ID)
			}
			if prev, dup := seen[r.ID]; dup {
				t.Errorf("id %q used by kinds %d and %d", r.ID, prev, k)
			}
			seen[r.ID] = k
			if !allowed[r.Status] {
				t.Errorf("status %d outside the status map", r.Status)
			}
			if (r.Status == 503) != (r.RetryAfter > 0) {
				t.Errorf("status %d with Retry-After %d: every 503 and only 503 has one", r.Status, r.RetryAfter)
			}
			if k != KindUnknown && r.Phase == PhaseNone {
				t.Error("no phase")
			}
			if r.Title == "" || r.Detail == "" || r.Explanation == "" || r.Fix == "" {
				t.Error("empty title, detail, explanation or fix")
			}
			for _, s := range []string{"127.0.0.1", "localhost", ":80", "http://"} {
				if strings.Contains(r.Detail, s) || strings.Contains(r.Title, s) {
					t.Errorf("client text mentions %q", s)
				}
			}
			if strings.Contains(r.Explanation+r.Detail, "timeout") && r.Status == 502 && !strings.Contains(r.Explanation, "timeouts.") {
				t.Errorf("a timeout is never a 502")
			}
			if got, ok := Lookup(r.ID); !ok || got != k {
				t.Errorf("Lookup(%q) = %v, %v", r.ID, got, ok)
			}
			if k.String() != r.ID || k.Error() != r.ID || k.Status() != r.Status {
				t.Error("String, Error or Status disagree with the row")
			}
		})
	}
	if Kind(200).Row() != KindUnknown.Row() {
		t.Error("an out-of-range Kind must fall back to KindUnknown")
	}
	if KindUnknown.Status() != 502 {
		t.Error("the fallthrough is 502")
	}
}

// TestTimeoutsAre504: every cause whose explanation is about a timeout
// answers 504 (RFC 9110 §15.6.5), never 502.
func TestTimeoutsAre504(t *testing.T) {
	for _, k := range []Kind{ConnectTimeout, ResponseTimeout, BodyTimeout} {
		if k.Status() != 504 {
			t.Errorf("%s: %d", k, k.Status())
		}
	}
}

// realErrors produces I/O errors from real operations on loopback.
func refusedErr(t *testing.T) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = net.Dial("tcp", addr)
	if err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	return err
}

func timeoutErr(t *testing.T) error {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	a.SetReadDeadline(aLongTimeAgoForTest)
	_, err := a.Read(make([]byte, 1))
	return err
}

var aLongTimeAgoForTest = timeUnix1

func TestClassify(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	bg := context.Background()
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	cases := []struct {
		name  string
		ctx   context.Context
		phase Phase
		err   error
		want  Kind
	}{
		{"refused", bg, PhaseConnect, refusedErr(t), ConnectRefused},
		{"connect timeout", bg, PhaseConnect, timeoutErr(t), ConnectTimeout},
		{"unreachable", bg, PhaseConnect, &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}, ConnectFailed},
		{"dns not found", bg, PhaseDNS, &net.DNSError{Err: "no such host", Name: "x.test", IsNotFound: true}, DNSFailed},
		{"dns timeout", bg, PhaseDNS, &net.DNSError{Err: "i/o timeout", Name: "x.test", IsTimeout: true}, ConnectTimeout},
		{"dns error in connect phase", bg, PhaseConnect, &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "x"}}, DNSFailed},
		{"context deadline in dial", bg, PhaseConnect, fmt.Errorf("dial: %w", context.DeadlineExceeded), ConnectTimeout},
		{"tls unknown authority", bg, PhaseTLS, &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, TLSUntrusted},
		{"tls hostname", bg, PhaseTLS, &tls.CertificateVerificationError{Err: x509.HostnameError{Host: "x"}}, TLSNameMismatch},
		{"tls expired", bg, PhaseTLS, &tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Reason: x509.Expired}}, TLSUntrusted},
		{"tls plaintext", bg, PhaseTLS, tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, TLSNotTLS},
		{"tls alert", bg, PhaseTLS, errors.New("remote error: tls: handshake failure"), TLSFailed},
		{"tls timeout", bg, PhaseTLS, timeoutErr(t), ConnectTimeout},
		{"write reset", bg, PhaseWrite, reset, WriteFailed},
		{"write stall", bg, PhaseWrite, timeoutErr(t), ResponseTimeout},
		{"closed before response", bg, PhaseReadHead, io.EOF, ClosedBeforeResponse},
		{"reset before response", bg, PhaseReadHead, reset, ResetBeforeResponse},
		{"epipe before response", bg, PhaseReadHead, syscall.EPIPE, ResetBeforeResponse},
		{"truncated head", bg, PhaseReadHead, io.ErrUnexpectedEOF, TruncatedHead},
		{"head timeout", bg, PhaseReadHead, timeoutErr(t), ResponseTimeout},
		{"body timeout", bg, PhaseReadBody, timeoutErr(t), BodyTimeout},
		{"body reset", bg, PhaseReadBody, reset, TruncatedBody},
		{"client gone beats timeout", canceled, PhaseReadHead, timeoutErr(t), ClientCanceled},
		{"client gone beats refused", canceled, PhaseConnect, refusedErr(t), ClientCanceled},
		{"unknown", bg, PhaseReadHead, errors.New("something else"), KindUnknown},
		{"already typed", canceled, PhaseReadHead, New(MalformedHeader, "x"), MalformedHeader},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fe := Classify(c.ctx, c.phase, c.err)
			if fe.Kind != c.want {
				t.Fatalf("Classify(%s, %v) = %s, want %s", c.phase, c.err, fe.Kind, c.want)
			}
			if !errors.Is(fe, c.want) {
				t.Fatalf("errors.Is(%v, %s) = false", fe, c.want)
			}
			if KindOf(fmt.Errorf("wrapped: %w", fe)) != c.want {
				t.Fatal("KindOf does not see through wrapping")
			}
		})
	}
	if Classify(bg, PhaseConnect, nil) != nil {
		t.Fatal("Classify(nil) must be nil")
	}
}

func TestQuote(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"plain", "abc", `"abc"`},
		{"controls are escaped", "a\r\nb\x00", `"a\r\nb\x00"`},
		{"long input is cut", strings.Repeat("x", 100), `"` + strings.Repeat("x", 80) + `"... (100 bytes)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Quote([]byte(c.in)); got != c.want {
				t.Fatalf("Quote = %s, want %s", got, c.want)
			}
		})
	}
}

// FuzzClassify: Classify never panics, always returns a Kind of the table
// whose status is in the status map, and a timeout is never a 502.
func FuzzClassify(f *testing.F) {
	f.Add(uint8(PhaseConnect), uint8(0), false)
	f.Add(uint8(PhaseReadHead), uint8(3), true)
	f.Add(uint8(PhaseTLS), uint8(5), false)
	errs := []error{
		io.EOF, io.ErrUnexpectedEOF, os.ErrDeadlineExceeded, context.DeadlineExceeded,
		syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EPIPE, tls.RecordHeaderError{},
		x509.HostnameError{}, x509.UnknownAuthorityError{}, &net.DNSError{IsTimeout: true},
		&net.DNSError{IsNotFound: true}, errors.New("x"), New(HeadTooLarge, ""),
	}
	f.Fuzz(func(t *testing.T, phase, which uint8, canceled bool) {
		ctx := context.Background()
		if canceled {
			c, cancel := context.WithCancel(ctx)
			cancel()
			ctx = c
		}
		err := errs[int(which)%len(errs)]
		fe := Classify(ctx, Phase(phase), fmt.Errorf("op: %w", err))
		if fe == nil || fe.Kind >= numKinds {
			t.Fatalf("Classify returned %v", fe)
		}
		timeout := errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded)
		if dn, ok := err.(*net.DNSError); ok && dn.IsTimeout {
			timeout = true
		}
		if timeout && fe.Kind.Status() == 502 {
			t.Fatalf("timeout %v in phase %s classified as %s (502)", err, Phase(phase), fe.Kind)
		}
		if canceled && fe.Kind != ClientCanceled && KindOf(err) == KindUnknown {
			t.Fatalf("canceled context classified as %s", fe.Kind)
		}
	})
}

var timeUnix1 = time.Unix(1, 0)
