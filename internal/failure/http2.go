package failure

import (
	"errors"

	"golang.org/x/net/http2"
)

// classifyHTTP2 maps the errors of golang.org/x/net/http2's client (the
// transport of upstreams with protocol h2) that arise before a response
// head, in phase write or read_head:
//   - RST_STREAM from the upstream (a [http2.StreamError] it sent, any code):
//     ResetBeforeResponse;
//   - a stream error candor's side raised on what the upstream sent (an
//     invalid or oversized response head, a missing :status; code
//     PROTOCOL_ERROR): MalformedHeader; any other code: ProtocolMismatch;
//   - GOAWAY, then the connection closed ([http2.GoAwayError]): with
//     NO_ERROR (a graceful shutdown that did not wait for the request)
//     ClosedBeforeResponse, with an error code ResetBeforeResponse;
//   - a connection error ([http2.ConnectionError]: frames that break
//     HTTP/2), or a frame larger than allowed ([http2.ErrFrameTooLarge]:
//     bytes that are not HTTP/2 at all, such as an HTTP/1.1-only server's
//     answer to the connection preface): ProtocolMismatch.
//
// In phase read_body every one of them is a TruncatedBody (the body broke
// mid-stream), as any other error there; ok is false then, and for errors
// that are not HTTP/2's.
func classifyHTTP2(p Phase, err error) (k Kind, ok bool) {
	if p != PhaseWrite && p != PhaseReadHead {
		return KindUnknown, false
	}
	if se, ok := errors.AsType[http2.StreamError](err); ok {
		switch {
		case fromPeer(se):
			return ResetBeforeResponse, true
		case se.Code == http2.ErrCodeProtocol:
			return MalformedHeader, true
		}
		return ProtocolMismatch, true
	}
	if ge, ok := errors.AsType[http2.GoAwayError](err); ok {
		if ge.ErrCode == http2.ErrCodeNo {
			return ClosedBeforeResponse, true
		}
		return ResetBeforeResponse, true
	}
	if _, ok := errors.AsType[http2.ConnectionError](err); ok {
		return ProtocolMismatch, true
	}
	if errors.Is(err, http2.ErrFrameTooLarge) {
		// What an HTTP/1.x answer to the connection preface reads as.
		return ProtocolMismatch, true
	}
	return KindUnknown, false
}

// peerCause is the text of x/net/http2's sentinel Cause of a StreamError
// that the peer sent in a RST_STREAM frame. The sentinel is unexported,
// so its text, which is fixed, is compared whole (never searched in): the
// upstream package's tests pin it against a real server's RST_STREAM.
const peerCause = "received from peer"

// fromPeer reports whether se is a RST_STREAM the upstream sent, rather
// than a stream error candor's client raised itself.
func fromPeer(se http2.StreamError) bool {
	return se.Cause != nil && se.Cause.Error() == peerCause
}
