// Package failure defines candor's cause table: every outcome that candor
// generates itself (rather than passing through from an upstream) has a
// [Kind], and one table row per Kind gives its HTTP status, the phase of the
// request it belongs to, whether retrying on another upstream target is safe,
// a client-facing title and detail, and an operator-facing explanation and
// fix.
//
// Everything that reports a failure reads this table: the error renderer, the
// log record, retry and passive health, metrics and the `candor causes`
// command. Adding a cause is one row in [table] plus its test.
//
// The package does no I/O and no logging.
package failure

import "strconv"

// Kind is a stable cause of a gateway-generated outcome. Its String form (the
// cause id, snake_case) is part of candor's public contract: it appears in
// problem responses, log records, metric labels and documentation, so a
// published id never changes meaning.
type Kind uint8

// The causes. Keep in step with [table]; TestTableComplete fails otherwise.
const (
	// KindUnknown is the fallthrough for an error no rule recognised. It
	// renders as a 502 and is counted so that it can be given a real cause.
	KindUnknown Kind = iota

	// Routing and selection (before any upstream is contacted).
	NoRoute
	NoHealthyUpstream
	InternalError
	Overloaded
	RouteMaintenance

	// DNS, connect and TLS: nothing of the request was sent.
	DNSFailed
	ConnectRefused
	ConnectFailed
	ConnectTimeout
	TLSFailed
	TLSUntrusted
	TLSNameMismatch
	TLSNotTLS

	// Writing the request.
	WriteFailed

	// Reading the response head.
	ClosedBeforeResponse
	ResetBeforeResponse
	ResponseTimeout
	TruncatedHead
	MalformedStatusLine
	MalformedHeader
	HeadTooLarge
	InvalidFraming
	UnexpectedUpgrade
	ProtocolMismatch

	// Reading the response body.
	TruncatedBody
	MalformedChunk
	BodyTimeout
	ResponseTooLarge

	// Validating a buffered response (strict routes).
	ContractViolation

	// The client.
	ClientCanceled
	ClientBodyInvalid
	MethodNotSupported

	// Requests candor refuses before routing (the downstream server):
	// nothing of them reaches an upstream.
	RequestMalformed
	RequestHostInvalid
	RequestFramingInvalid
	RequestCodingUnsupported
	RequestLineTooLong
	RequestHeaderTooLarge
	RequestBodyTooLarge
	RequestTimeout
	RequestVersionUnsupported

	numKinds
)

// Phase is the step of the request path in which an outcome arose.
type Phase uint8

// The phases, in request order.
const (
	PhaseNone Phase = iota
	PhaseRoute
	PhaseSelect
	PhaseDNS
	PhaseConnect
	PhaseTLS
	PhaseWrite
	PhaseReadHead
	PhaseReadBody
	PhaseValidate
	PhaseInternal
	PhaseClient
	numPhases
)

var phaseNames = [numPhases]string{
	PhaseNone:     "none",
	PhaseRoute:    "route",
	PhaseSelect:   "select",
	PhaseDNS:      "dns",
	PhaseConnect:  "connect",
	PhaseTLS:      "tls",
	PhaseWrite:    "write",
	PhaseReadHead: "read_head",
	PhaseReadBody: "read_body",
	PhaseValidate: "validate",
	PhaseInternal: "internal",
	PhaseClient:   "client",
}

// String returns the phase's stable snake_case name.
func (p Phase) String() string {
	if p < numPhases {
		return phaseNames[p]
	}
	return "phase(" + strconv.Itoa(int(p)) + ")"
}

// Retry says when a failed attempt may be repeated on another target.
type Retry uint8

const (
	// RetryNever: repeating cannot help or would be unsafe.
	RetryNever Retry = iota
	// RetryAlways: nothing of the request reached the upstream, so any
	// request may be sent elsewhere.
	RetryAlways
	// RetryIfReplayable: the request may have reached the upstream, so it
	// may be repeated only when it is idempotent (RFC 9110 §9.2.2) or
	// carries Idempotency-Key, and its body can be replayed.
	RetryIfReplayable
)

var retryNames = [...]string{RetryNever: "never", RetryAlways: "always", RetryIfReplayable: "if_replayable"}

// String returns "never", "always" or "if_replayable".
func (r Retry) String() string {
	if int(r) < len(retryNames) {
		return retryNames[r]
	}
	return "retry(" + strconv.Itoa(int(r)) + ")"
}

// StatusClientClosed is the status recorded (in logs and metrics only) when
// the client went away before candor could answer. It is never written to a
// client.
const StatusClientClosed = 499

// Row is one line of the cause table.
type Row struct {
	// ID is the stable cause id, e.g. "upstream_connect_refused".
	ID string
	// Status is the HTTP status candor answers with.
	Status int
	// Phase is where the cause arises; an [Error] may record a more precise
	// phase (a timeout during DNS is [PhaseDNS]).
	Phase Phase
	// Retry says whether another target may be tried.
	Retry Retry
	// RetryAfter is the Retry-After value in seconds sent with the response,
	// or 0 for none. Every 503 has one.
	RetryAfter int
	// Title is the short client-facing summary (problem+json "title").
	Title string
	// Detail is the client-facing sentence (problem+json "detail"). It never
	// names an upstream, an address or an internal error.
	Detail string
	// Explanation tells an operator, in plain language, what happened.
	Explanation string
	// Fix tells an operator what to check.
	Fix string
}

// Row returns k's row of the cause table. An out-of-range Kind gets the row
// of [KindUnknown].
func (k Kind) Row() *Row {
	if k < numKinds {
		return &table[k]
	}
	return &table[KindUnknown]
}

// String returns the cause id.
func (k Kind) String() string { return k.Row().ID }

// Status returns the HTTP status for k.
func (k Kind) Status() int { return k.Row().Status }

// Kinds returns every Kind in table order.
func Kinds() []Kind {
	ks := make([]Kind, numKinds)
	for i := range ks {
		ks[i] = Kind(i)
	}
	return ks
}

// Lookup returns the Kind whose cause id is id.
func Lookup(id string) (Kind, bool) {
	for i := range table {
		if table[i].ID == id {
			return Kind(i), true
		}
	}
	return KindUnknown, false
}
