package upstream

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"candor/internal/failure"
)

// after says what the server does once it has written a row's response.
type after uint8

const (
	thenHold  after = iota // keep the connection open (keep-alive)
	thenClose              // close it (FIN)
	thenReset              // once the client has read readFirst body bytes, reset it (RST)
)

// bodyCase is one row of TestBody: the bytes an upstream answers with, and
// what the client must read.
type bodyCase struct {
	name      string
	resp      string // the whole response, head included
	then      after
	readFirst int // body bytes read before thenReset acts
	method    string
	opt       func(*Options)
	want      string  // the body bytes read, up to the failure if any
	trailer   []Field // for a complete chunked body
	pooled    bool    // the connection must go back to the pool
	kind      failure.Kind
	detail    string
}

// complete is a row whose body reads to io.EOF as want.
func complete(name, resp string, then after, want string) bodyCase {
	return bodyCase{name: name, resp: resp, then: then, want: want}
}

// broken is a row whose body fails with kind k after delivering want.
func broken(name, resp string, then after, want string, k failure.Kind, detail string) bodyCase {
	return bodyCase{name: name, resp: resp, then: then, want: want, kind: k, detail: detail}
}

func (c bodyCase) pool() bodyCase                        { c.pooled = true; return c }
func (c bodyCase) withTrailer(f ...Field) bodyCase       { c.trailer = f; return c }
func (c bodyCase) withOptions(o func(*Options)) bodyCase { c.opt = o; return c }
func (c bodyCase) resetAfter(n int) bodyCase             { c.then, c.readFirst = thenReset, n; return c }
func (c bodyCase) forMethod(m string) bodyCase           { c.method = m; return c }

const chunkedHead = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

func idle200ms(o *Options)     { o.IdleTimeout = 200 * time.Millisecond }
func twoHeadFields(o *Options) { o.HeadLimits.Fields = 2 }

func bodyCases() []bodyCase {
	big := strings.Repeat("0123456789abcdef", 1000)
	return []bodyCase{
		// Content-Length.
		complete("Content-Length exact", "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", thenHold, "hello world").pool(),
		complete("Content-Length 0", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", thenHold, "").pool(),
		complete("Content-Length larger than the read buffer", "HTTP/1.1 200 OK\r\nContent-Length: 16000\r\n\r\n"+big, thenHold, big).pool(),
		complete("Connection: close is not pooled", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", thenClose, "ok"),
		complete("HTTP/1.0 is not pooled", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", thenClose, "ok"),
		complete("HEAD has no body", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", thenHold, "").forMethod("HEAD").pool(),
		complete("204 has no body", "HTTP/1.1 204 No Content\r\n\r\n", thenHold, "").pool(),
		broken("Content-Length short, then close", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", thenClose, "hello",
			failure.TruncatedBody, "connection closed after 5 of 10 body bytes"),
		broken("Content-Length, nothing, then close", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", thenClose, "",
			failure.TruncatedBody, "connection closed after 0 of 10 body bytes"),
		broken("Content-Length stall", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", thenHold, "hello",
			failure.BodyTimeout, "after 5 body bytes").withOptions(idle200ms),
		broken("Content-Length reset", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", thenReset, "hello",
			failure.TruncatedBody, "after 5 body bytes").resetAfter(5),

		// Chunked (RFC 9112 §7.1).
		complete("chunked with extensions and trailers",
			chunkedHead+"5;name=value\r\nhello\r\n6 ; quoted=\"a;b\"\r\n world\r\n0;last\r\nX-Checksum: abc\r\nContent-Length: 11\r\nX-Other:  1 \r\n\r\n",
			thenHold, "hello world").pool().withTrailer(Field{"X-Checksum", "abc"}, Field{"X-Other", "1"}),
		complete("chunked upper-case hex and leading zeros", chunkedHead+"000A\r\n0123456789\r\n00\r\n\r\n", thenHold, "0123456789").pool(),
		complete("chunked larger than the read buffer", chunkedHead+"3e80\r\n"+big+"\r\n0\r\n\r\n", thenHold, big).pool(),
		complete("trailer with exactly the field limit",
			chunkedHead+"2\r\nok\r\n0\r\nA: 1\r\nB: 2\r\n\r\n", thenHold, "ok").pool().
			withTrailer(Field{"A", "1"}, Field{"B", "2"}).withOptions(twoHeadFields),
		broken("trailer over the field limit", chunkedHead+"2\r\nok\r\n0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", thenHold, "ok",
			failure.MalformedChunk, "trailer section too large").withOptions(twoHeadFields),
		broken("chunk size zz", chunkedHead+"zz\r\nhello\r\n0\r\n\r\n", thenHold, "",
			failure.MalformedChunk, `invalid chunk size: "zz"`),
		broken("chunk size -1", chunkedHead+"-1\r\nhello\r\n0\r\n\r\n", thenHold, "",
			failure.MalformedChunk, `invalid chunk size: "-1"`),
		broken("empty chunk size", chunkedHead+"\r\nhello\r\n0\r\n\r\n", thenHold, "",
			failure.MalformedChunk, "invalid chunk size"),
		broken("chunk size overflow", chunkedHead+"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n", thenHold, "",
			failure.MalformedChunk, "chunk size overflows"),
		broken("bare LF after the chunk size", chunkedHead+"5\nhello\r\n0\r\n\r\n", thenHold, "",
			failure.MalformedChunk, "chunk-size line ends in a bare LF"),
		broken("whitespace after the chunk size", chunkedHead+"5 \r\nhello\r\n0\r\n\r\n", thenHold, "",
			failure.MalformedChunk, "invalid chunk extension"),
		broken("control character in a chunk extension", chunkedHead+"5;a\x01b\r\nhello\r\n0\r\n\r\n", thenHold, "",
			failure.MalformedChunk, "invalid chunk extension"),
		broken("chunk-size line longer than the buffer", chunkedHead+"5;"+strings.Repeat("x", 5000)+"\r\nhello\r\n0\r\n\r\n", thenHold, "",
			failure.MalformedChunk, "chunk-size line longer than 4096 bytes"),
		broken("chunk data longer than its size", chunkedHead+"5\r\nhelloX\r\n0\r\n\r\n", thenHold, "hello",
			failure.MalformedChunk, "chunk data longer than its size or not followed by CRLF"),
		broken("bare LF after chunk data", chunkedHead+"5\r\nhello\n0\r\n\r\n", thenHold, "hello",
			failure.MalformedChunk, "not followed by CRLF"),
		broken("trailer without a colon", chunkedHead+"5\r\nhello\r\n0\r\nX-Trailer\r\n\r\n", thenHold, "hello",
			failure.MalformedChunk, "trailer upstream_malformed_header: header line 1: no colon"),
		broken("trailer with a NUL", chunkedHead+"5\r\nhello\r\n0\r\nX: a\x00\r\n\r\n", thenHold, "hello",
			failure.MalformedChunk, "control character"),
		broken("trailer with a bare LF", chunkedHead+"5\r\nhello\r\n0\r\nX: a\n\r\n", thenHold, "hello",
			failure.MalformedChunk, "trailer line ends in a bare LF"),
		broken("close inside a chunk", chunkedHead+"5\r\nhel", thenClose, "hel",
			failure.TruncatedBody, "connection closed inside a chunk after 3 body bytes"),
		broken("close before the CRLF after chunk data", chunkedHead+"5\r\nhello", thenClose, "hello",
			failure.TruncatedBody, "connection closed after chunk data"),
		broken("close before the last chunk", chunkedHead+"5\r\nhello\r\n", thenClose, "hello",
			failure.TruncatedBody, "connection closed in the chunked framing after 5 body bytes"),
		broken("close in the trailer section", chunkedHead+"5\r\nhello\r\n0\r\nX: 1\r\n", thenClose, "hello",
			failure.TruncatedBody, "connection closed in the chunked framing"),
		broken("chunked stall", chunkedHead+"5\r\nhello\r\n", thenHold, "hello",
			failure.BodyTimeout, "after 5 body bytes").withOptions(idle200ms),
		broken("chunked reset", chunkedHead+"5\r\nhello\r\n3\r\nabc\r\n", thenReset, "helloabc",
			failure.TruncatedBody, "after 8 body bytes").resetAfter(8),

		// Close-delimited (RFC 9112 §6.3 rule 8).
		complete("close-delimited", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the very end", thenClose, "until the very end"),
		complete("close-delimited empty", "HTTP/1.1 200 OK\r\n\r\n", thenClose, ""),
		broken("close-delimited stall", "HTTP/1.1 200 OK\r\n\r\nabc", thenHold, "abc",
			failure.BodyTimeout, "after 3 body bytes").withOptions(idle200ms),
		broken("close-delimited reset", "HTTP/1.1 200 OK\r\n\r\nabcdef", thenReset, "abcdef",
			failure.TruncatedBody, "after 6 body bytes").resetAfter(6),
	}
}

// TestBody reads each row's body through a real loopback connection.
func TestBody(t *testing.T) {
	for _, tc := range bodyCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			step := make(chan struct{})
			s := startServer(t, func(c *srvConn) {
				if _, err := c.readRequest(); err != nil {
					return
				}
				if c.write(tc.resp) != nil {
					return
				}
				switch tc.then {
				case thenHold:
					c.hold()
				case thenReset:
					select {
					case <-step:
					case <-c.s.done:
					}
					c.reset()
				}
			})
			opt := testOptions()
			if tc.opt != nil {
				tc.opt(&opt)
			}
			tr, tg := newTestTransport(t, opt, s.url)
			method := tc.method
			if method == "" {
				method = "GET"
			}
			resp, err := tr.RoundTrip(t.Context(), tg, newRequest(method))
			if err != nil {
				t.Fatalf("RoundTrip: %v", err)
			}
			first := make([]byte, tc.readFirst)
			if _, err := io.ReadFull(resp.Body, first); err != nil {
				t.Fatalf("reading the first %d body bytes: %v", tc.readFirst, err)
			}
			if tc.then == thenReset {
				close(step)
			}
			rest, err := io.ReadAll(resp.Body)
			got := string(first) + string(rest)
			if got != tc.want {
				t.Errorf("body = %q, want %q", got, tc.want)
			}
			if tc.kind == failure.KindUnknown {
				if err != nil {
					t.Fatalf("reading the body: %v", err)
				}
				if diff := cmp.Diff(tc.trailer, resp.Body.Trailer(), cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("trailer (-want +got):\n%s", diff)
				}
				if n := resp.Body.BytesRead(); n != int64(len(tc.want)) {
					t.Errorf("BytesRead = %d, want %d", n, len(tc.want))
				}
			} else {
				checkBodyFailure(t, err, tc.kind, tc.detail, tg)
				if resp.Body.Err() != err {
					t.Errorf("Err() = %v, want the error Read returned", resp.Body.Err())
				}
				if _, again := resp.Body.Read(make([]byte, 1)); again != err {
					t.Errorf("Read after the failure = %v, want the same error", again)
				}
			}
			resp.Body.Close()
			want := 0
			if tc.pooled {
				want = 1
			}
			if n := tg.IdleConns(); n != want {
				t.Errorf("IdleConns = %d, want %d", n, want)
			}
		})
	}
}

// checkBodyFailure checks a body failure's record.
func checkBodyFailure(t *testing.T, err error, k failure.Kind, detail string, tg *Target) {
	t.Helper()
	fe := asFailure(t, err)
	if fe.Kind != k {
		t.Errorf("kind = %v, want %v (%v)", fe.Kind, k, err)
	}
	if !errors.Is(err, k) {
		t.Errorf("errors.Is(err, %v) = false", k)
	}
	if fe.Phase != failure.PhaseReadBody {
		t.Errorf("phase = %v, want read_body", fe.Phase)
	}
	if !strings.Contains(fe.Detail, detail) {
		t.Errorf("detail = %q, want it to contain %q", fe.Detail, detail)
	}
	if fe.Upstream != "test-upstream" || fe.Target != tg.Addr || fe.Attempt != 1 {
		t.Errorf("Upstream, Target, Attempt = %q, %q, %d; want %q, %q, 1", fe.Upstream, fe.Target, fe.Attempt, "test-upstream", tg.Addr)
	}
	if fe.BytesReceived <= 0 || fe.BytesSent <= 0 {
		t.Errorf("BytesSent, BytesReceived = %d, %d; want both > 0", fe.BytesSent, fe.BytesReceived)
	}
}

// TestBodyCloseEarly checks that a body closed before its end takes its
// connection down, and one closed after it is pooled.
func TestBodyCloseEarly(t *testing.T) {
	closed := make(chan struct{})
	s := startServer(t, func(c *srvConn) {
		for {
			if _, err := c.readRequest(); err != nil {
				close(closed)
				return
			}
			c.write("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789")
		}
	})
	tr, tg := newTestTransport(t, testOptions(), s.url)
	resp, err := tr.RoundTrip(t.Context(), tg, newRequest("GET"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := tg.IdleConns(); n != 0 {
		t.Errorf("IdleConns after an early Close = %d, want 0", n)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream connection was not closed")
	}
}

// TestBodyCancelBetweenReads checks that a request canceled while the
// caller is between two Reads (writing to its client, say) fails the next
// Read at once. Before the fix in Body.Read, the Read's own idle deadline
// overwrote the past deadline that cancellation had set, and the Read
// waited the whole IdleTimeout.
func TestBodyCancelBetweenReads(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	opt := testOptions()
	opt.IdleTimeout = 30 * time.Second
	b, fc := fakeBody(ctx, []byte("hello"), BodyLength, 10, opt)
	fc.hold = true
	interrupted := make(chan struct{}, 1)
	fc.onDeadline = func(d time.Time) {
		if d.Equal(aLongTimeAgo) {
			interrupted <- struct{}{}
		}
	}
	b.att.stop = context.AfterFunc(ctx, func() { b.c.nc.SetDeadline(aLongTimeAgo) })

	if n, err := b.Read(make([]byte, 5)); n != 5 || err != nil {
		t.Fatalf("first Read = %d, %v", n, err)
	}
	cancel()
	select {
	case <-interrupted:
	case <-time.After(5 * time.Second):
		t.Fatal("cancellation did not set a deadline")
	}
	done := make(chan error, 1)
	go func() {
		_, err := b.Read(make([]byte, 5))
		done <- err
	}()
	select {
	case err := <-done:
		fe := asFailure(t, err)
		if fe.Kind != failure.ClientCanceled {
			t.Errorf("kind = %v, want client_canceled (%v)", fe.Kind, err)
		}
	case <-time.After(3 * time.Second):
		fc.Close() // unblock the Read
		<-done
		t.Fatal("Read after cancellation waited for the idle timeout")
	}
}
