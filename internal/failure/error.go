package failure

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Error is a failed attempt, typed where the phase is known: the dialer knows
// it was a dial, the response-head parser knows which rule broke. Upstream,
// Target and Detail are for operators only; they go to logs, never to
// clients.
type Error struct {
	Kind  Kind
	Phase Phase
	// Upstream is the configured upstream's name, Target the address of the
	// target (host:port) the attempt used.
	Upstream string
	Target   string
	// Attempt counts attempts for one request, from 1.
	Attempt int
	// BytesSent and BytesReceived count what crossed the upstream
	// connection in this attempt (request and response, heads included).
	BytesSent     int64
	BytesReceived int64
	// Reused reports whether the attempt used a pooled connection.
	Reused bool
	// Detail says what validation failed, e.g. `header line 3: whitespace
	// before colon: "X-Foo : bar"`. Offending bytes are quoted, escaped and
	// truncated by [Quote].
	Detail string
	// Err is the underlying error, if any.
	Err error
}

// New returns an Error of kind k in k's phase.
func New(k Kind, detail string) *Error {
	return &Error{Kind: k, Phase: k.Row().Phase, Detail: detail}
}

// Wrap returns an Error of kind k in k's phase wrapping err.
func Wrap(k Kind, detail string, err error) *Error {
	return &Error{Kind: k, Phase: k.Row().Phase, Detail: detail, Err: err}
}

// Error returns "cause: detail: underlying error" for logs.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.String())
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is the Kind of e, so that
// errors.Is(err, failure.ConnectRefused) works on wrapped errors.
func (e *Error) Is(target error) bool {
	k, ok := target.(Kind)
	return ok && k == e.Kind
}

// Error makes a Kind usable as an errors.Is target.
func (k Kind) Error() string { return k.String() }

// KindOf returns the Kind of the first *Error in err's chain, or
// [KindUnknown].
func KindOf(err error) Kind {
	if fe, ok := errors.AsType[*Error](err); ok {
		return fe.Kind
	}
	return KindUnknown
}

// Classify turns an I/O error that arose in phase p into a typed *Error. An
// error that already is an *Error is returned as it is. ctx is the request's
// context: when it was canceled, the failure is the client's
// ([ClientCanceled]), whatever the I/O error says.
//
// The mapping per phase:
//   - any phase, context canceled by the client: ClientCanceled;
//   - dns: a timeout is ConnectTimeout (a timeout is never a 502), otherwise DNSFailed;
//   - connect: ECONNREFUSED is ConnectRefused, a timeout ConnectTimeout, otherwise ConnectFailed;
//   - tls: certificate errors are TLSUntrusted or TLSNameMismatch, a
//     plaintext answer TLSNotTLS, a timeout ConnectTimeout, otherwise TLSFailed;
//   - write: a timeout is ResponseTimeout (the upstream stopped reading), otherwise WriteFailed;
//   - read_head: EOF is ClosedBeforeResponse, ECONNRESET ResetBeforeResponse,
//     a timeout ResponseTimeout;
//   - read_body: a timeout is BodyTimeout, anything else TruncatedBody;
//   - write and read_head, HTTP/2 errors (upstreams with protocol h2):
//     see [classifyHTTP2];
//   - any other phase: a timeout is ResponseTimeout (never a 502), anything
//     else KindUnknown.
func Classify(ctx context.Context, p Phase, err error) *Error {
	if err == nil {
		return nil
	}
	if fe, ok := errors.AsType[*Error](err); ok {
		return fe
	}
	if ctx != nil && errors.Is(ctx.Err(), context.Canceled) {
		// Only cancellation is the client's; a deadline on the context is
		// a timeout like any other (504).
		return &Error{Kind: ClientCanceled, Phase: p, Err: err}
	}
	k := classifyKind(p, err)
	return &Error{Kind: k, Phase: p, Err: err}
}

func classifyKind(p Phase, err error) Kind {
	timeout := isTimeout(err)
	if k, ok := classifyHTTP2(p, err); ok && !timeout {
		return k
	}
	switch p {
	case PhaseDNS:
		if timeout {
			return ConnectTimeout
		}
		return DNSFailed
	case PhaseConnect:
		switch {
		case timeout:
			return ConnectTimeout
		case errors.Is(err, syscall.ECONNREFUSED):
			return ConnectRefused
		case isDNSError(err):
			return DNSFailed
		}
		return ConnectFailed
	case PhaseTLS:
		if timeout {
			return ConnectTimeout
		}
		return classifyTLS(err)
	case PhaseWrite:
		if timeout {
			return ResponseTimeout
		}
		return WriteFailed
	case PhaseReadHead:
		switch {
		case timeout:
			return ResponseTimeout
		case errors.Is(err, io.EOF):
			return ClosedBeforeResponse
		case errors.Is(err, io.ErrUnexpectedEOF):
			return TruncatedHead
		case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
			return ResetBeforeResponse
		}
		return KindUnknown
	case PhaseReadBody:
		if timeout {
			return BodyTimeout
		}
		return TruncatedBody
	}
	if timeout {
		// A timeout is never a 502, whatever the phase.
		return ResponseTimeout
	}
	return KindUnknown
}

func classifyTLS(err error) Kind {
	if _, ok := errors.AsType[x509.HostnameError](err); ok {
		return TLSNameMismatch
	}
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return TLSUntrusted
	}
	if _, ok := errors.AsType[x509.CertificateInvalidError](err); ok {
		return TLSUntrusted
	}
	if _, ok := errors.AsType[tls.RecordHeaderError](err); ok {
		// The first bytes back were not a TLS record: plaintext.
		return TLSNotTLS
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return ConnectRefused
	}
	return TLSFailed
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return true
	}
	return false
}

func isDNSError(err error) bool {
	_, ok := errors.AsType[*net.DNSError](err)
	return ok
}

// maxQuote bounds how much of an offending line a Detail quotes.
const maxQuote = 80

// Quote renders offending upstream bytes for a Detail: Go-quoted (so CR, LF,
// NUL and non-UTF-8 bytes are visible and cannot forge log lines) and cut to
// 80 bytes of input with a note of the full length.
func Quote(b []byte) string {
	if len(b) <= maxQuote {
		return strconv.Quote(string(b))
	}
	return strconv.Quote(string(b[:maxQuote])) + "... (" + strconv.Itoa(len(b)) + " bytes)"
}
