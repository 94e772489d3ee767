package failure

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"golang.org/x/net/http2"
)

// TestClassifyHTTP2 checks the mapping of x/net/http2's client errors
// (upstreams with protocol h2). internal/upstream's h2 tests produce the
// same errors with real servers (RST_STREAM, GOAWAY, an HTTP/1.1 server
// answering the preface) and check the causes end to end.
func TestClassifyHTTP2(t *testing.T) {
	bg := context.Background()
	canceled, cancel := context.WithCancel(bg)
	cancel()
	peer := errors.New(peerCause)
	cases := []struct {
		name  string
		ctx   context.Context
		phase Phase
		err   error
		want  Kind
	}{
		{"rst refused", bg, PhaseReadHead, http2.StreamError{StreamID: 1, Code: http2.ErrCodeRefusedStream, Cause: peer}, ResetBeforeResponse},
		{"rst internal", bg, PhaseReadHead, http2.StreamError{StreamID: 3, Code: http2.ErrCodeInternal, Cause: peer}, ResetBeforeResponse},
		{"rst protocol from peer", bg, PhaseReadHead, http2.StreamError{StreamID: 3, Code: http2.ErrCodeProtocol, Cause: peer}, ResetBeforeResponse},
		{"rst while writing", bg, PhaseWrite, http2.StreamError{StreamID: 5, Code: http2.ErrCodeCancel, Cause: peer}, ResetBeforeResponse},
		{"wrapped rst", bg, PhaseReadHead, fmt.Errorf("round trip: %w", http2.StreamError{StreamID: 1, Code: http2.ErrCodeCancel, Cause: peer}), ResetBeforeResponse},
		{"malformed head", bg, PhaseReadHead, http2.StreamError{StreamID: 1, Code: http2.ErrCodeProtocol, Cause: errors.New("malformed response from server: missing status pseudo header")}, MalformedHeader},
		{"local protocol error without cause", bg, PhaseReadHead, http2.StreamError{StreamID: 1, Code: http2.ErrCodeProtocol}, MalformedHeader},
		{"local flow control", bg, PhaseReadHead, http2.StreamError{StreamID: 1, Code: http2.ErrCodeFlowControl}, ProtocolMismatch},
		{"goaway graceful", bg, PhaseReadHead, http2.GoAwayError{LastStreamID: 1, ErrCode: http2.ErrCodeNo}, ClosedBeforeResponse},
		{"goaway error", bg, PhaseReadHead, http2.GoAwayError{LastStreamID: 1, ErrCode: http2.ErrCodeInternal}, ResetBeforeResponse},
		{"connection error", bg, PhaseReadHead, http2.ConnectionError(http2.ErrCodeProtocol), ProtocolMismatch},
		{"frame size error", bg, PhaseWrite, http2.ConnectionError(http2.ErrCodeFrameSize), ProtocolMismatch},
		{"http1 answer to the preface", bg, PhaseReadHead, fmt.Errorf("http2: failed reading the frame payload: %w, note that the frame header looked like an HTTP/1.1 header", http2.ErrFrameTooLarge), ProtocolMismatch},
		{"body rst", bg, PhaseReadBody, http2.StreamError{StreamID: 1, Code: http2.ErrCodeInternal, Cause: peer}, TruncatedBody},
		{"body goaway", bg, PhaseReadBody, http2.GoAwayError{ErrCode: http2.ErrCodeNo}, TruncatedBody},
		{"body connection error", bg, PhaseReadBody, http2.ConnectionError(http2.ErrCodeProtocol), TruncatedBody},
		{"client gone beats rst", canceled, PhaseReadHead, http2.StreamError{StreamID: 1, Code: http2.ErrCodeCancel, Cause: peer}, ClientCanceled},
		{"not http2", bg, PhaseReadHead, io.EOF, ClosedBeforeResponse},
		{"connect phase ignores http2", bg, PhaseConnect, http2.ConnectionError(http2.ErrCodeProtocol), ConnectFailed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fe := Classify(c.ctx, c.phase, c.err)
			if fe.Kind != c.want {
				t.Fatalf("Classify(%v, %v) = %v, want %v", c.phase, c.err, fe.Kind, c.want)
			}
			if !errors.Is(fe, c.err) {
				t.Fatalf("the classified error does not wrap %v", c.err)
			}
		})
	}
}
