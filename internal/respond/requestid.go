package respond

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
)

// HeaderRequestID is the header that carries the request id, in canonical
// form: candor reads it from the client, sends it upstream and returns it on
// every response it generates.
const HeaderRequestID = "X-Request-Id"

// MaxRequestIDLen is the longest client-supplied request id candor adopts.
const MaxRequestIDLen = 128

// RequestID returns the request id for a request with header h: the
// client's X-Request-Id when there is exactly one such field line and its
// value is sane ([ValidRequestID]), otherwise a fresh id from
// [NewRequestID]. Anything else (several values, an empty or oversized
// value, characters outside the safe set) is discarded, never repaired or
// echoed: the id ends up in response headers, bodies, logs and upstream
// requests. h must have canonical keys, as a request header read by net/http
// does.
func RequestID(h http.Header) string {
	if v := h[HeaderRequestID]; len(v) == 1 && ValidRequestID(v[0]) {
		return v[0]
	}
	return NewRequestID()
}

// ValidRequestID reports whether id is a sane request id: 1 to
// [MaxRequestIDLen] bytes of ASCII letters, digits and ._:+/=- (which covers
// UUIDs, W3C trace ids, ULIDs and base64). Such an id needs no escaping in a
// header, a log line, JSON, HTML or a URN.
func ValidRequestID(id string) bool {
	if len(id) == 0 || len(id) > MaxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '_', c == ':', c == '+', c == '/', c == '=', c == '-':
		default:
			return false
		}
	}
	return true
}

// NewRequestID returns a fresh request id: 128 bits from crypto/rand as 32
// lowercase hex digits. That is exactly the form of a W3C Trace Context
// trace-id (https://www.w3.org/TR/trace-context/#trace-id), so the same
// value can serve as the trace id of a new trace; the all-zero value, which
// the spec forbids, is never returned. It costs one allocation.
func NewRequestID() string {
	var raw [16]byte
	for {
		rand.Read(raw[:]) // never returns an error; it crashes the program instead
		if raw != [16]byte{} {
			break
		}
	}
	var id [32]byte
	hex.Encode(id[:], raw[:])
	return string(id[:])
}
