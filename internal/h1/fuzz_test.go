package h1

import (
	"bufio"
	"bytes"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// fuzzLimits are the limits of the fuzz test's first parse; the re-parse
// of an accepted head uses roomy ones (re-serialising may add a byte or
// two per field).
var (
	fuzzLimits = limits{line: 256, header: 1024, fields: 16}
	roomy      = limits{line: 1 << 20, header: 1 << 20, fields: 1 << 10}
)

// FuzzParseRequest checks the request parser's invariants:
//   - it never panics, and reads a head the same way whether it arrives
//     whole or a byte at a time;
//   - an accepted head re-serialised in canonical form is accepted again,
//     identically;
//   - framing is unambiguous: never both Content-Length and
//     Transfer-Encoding, at most one Transfer-Encoding line, chunked only
//     on HTTP/1.1, and ContentLength says which;
//   - where net/http's reader accepts the head too, both agree on the
//     method, target, host, header fields and framing.
//
// Run it with go test -fuzz FuzzParseRequest ./internal/h1; the corpus it
// finds lives in testdata/fuzz/FuzzParseRequest.
func FuzzParseRequest(f *testing.F) {
	for _, tc := range parseCases {
		f.Add([]byte(tc.raw))
	}
	f.Add([]byte("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\nTrailer: X\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, n, fe := parseRaw(data, fuzzLimits, 0)
		r1, n1, fe1 := parseRaw(data, fuzzLimits, 1)
		if (fe == nil) != (fe1 == nil) || fe != nil && fe.Kind != fe1.Kind || n != n1 {
			t.Fatalf("whole: %v (%d), byte by byte: %v (%d)", fe, n, fe1, n1)
		}
		if fe != nil {
			if fe == errIncomplete {
				return
			}
			if fe.Kind.Status() < 400 {
				t.Fatalf("refusal %v with status %d", fe, fe.Kind.Status())
			}
			return
		}
		head := data[:n]
		checkFraming(t, head, r)
		if r1.Method != r.Method || r1.RequestURI != r.RequestURI || !maps.EqualFunc(r.Header, r1.Header, slices.Equal) {
			t.Fatalf("byte by byte read another request")
		}

		again := serialise(r)
		r2, n2, fe2 := parseRaw(again, roomy, 0)
		if fe2 != nil || n2 != len(again) {
			t.Fatalf("re-serialised head refused: %v\n%q", fe2, again)
		}
		if d := diffRequests(r, r2, false); d != "" {
			t.Fatalf("re-serialised head read differently: %s\n%q", d, again)
		}

		std, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			return // net/http refuses it too, or is stricter here
		}
		if d := diffRequests(std, r, true); d != "" {
			t.Fatalf("net/http reads %q differently: %s", head, d)
		}
	})
}

// checkFraming checks the framing invariants of an accepted head against
// its raw field lines.
func checkFraming(t *testing.T, head []byte, r *http.Request) {
	t.Helper()
	var te, cl int
	for _, line := range strings.Split(string(head), "\r\n")[1:] {
		name, _, ok := strings.Cut(line, ":")
		switch {
		case !ok:
		case strings.EqualFold(name, "Transfer-Encoding"):
			te++
		case strings.EqualFold(name, "Content-Length"):
			cl++
		}
	}
	switch {
	case te > 1, te > 0 && cl > 0:
		t.Fatalf("accepted %d Transfer-Encoding and %d Content-Length lines", te, cl)
	case te == 1:
		if r.ContentLength != -1 || r.ProtoMinor != 1 || len(r.TransferEncoding) != 1 {
			t.Fatalf("chunked request with ContentLength %d, %s, %v", r.ContentLength, r.Proto, r.TransferEncoding)
		}
	case cl > 0:
		vs := r.Header["Content-Length"]
		if len(vs) != 1 {
			t.Fatalf("Content-Length field %q", vs)
		}
		if n, ok := parseDecimal([]byte(vs[0])); !ok || n != r.ContentLength || n < 0 {
			t.Fatalf("Content-Length request with ContentLength %d, field %q", r.ContentLength, r.Header["Content-Length"])
		}
	default:
		if r.ContentLength != 0 || r.Body != http.NoBody {
			t.Fatalf("request without framing has ContentLength %d", r.ContentLength)
		}
	}
}

// serialise writes r's head in canonical form.
func serialise(r *http.Request) []byte {
	var b bytes.Buffer
	b.WriteString(r.Method + " " + r.RequestURI + " " + r.Proto + "\r\n")
	if r.Host != "" || r.ProtoMinor == 1 {
		b.WriteString("Host: " + r.Host + "\r\n")
	}
	for _, k := range slices.Sorted(maps.Keys(r.Header)) {
		for _, v := range r.Header[k] {
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	if len(r.TransferEncoding) > 0 {
		b.WriteString("Transfer-Encoding: chunked\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// diffRequests describes how b differs from a, or returns "". std marks a
// as net/http's, which keeps Expect and Trailer out of the comparison and
// may have added Cache-Control for a Pragma (fixPragmaCacheControl).
func diffRequests(a, b *http.Request, std bool) string {
	var d []string
	if a.Method != b.Method {
		d = append(d, "method "+a.Method+" / "+b.Method)
	}
	if a.RequestURI != b.RequestURI {
		d = append(d, "target "+a.RequestURI+" / "+b.RequestURI)
	}
	if a.Host != b.Host {
		d = append(d, "host "+a.Host+" / "+b.Host)
	}
	if a.Proto != b.Proto {
		d = append(d, "proto "+a.Proto+" / "+b.Proto)
	}
	if a.URL.String() != b.URL.String() || a.URL.Path != b.URL.Path || a.URL.RawPath != b.URL.RawPath || a.URL.RawQuery != b.URL.RawQuery {
		d = append(d, "URL "+a.URL.String()+" / "+b.URL.String())
	}
	if a.ContentLength != b.ContentLength {
		d = append(d, "ContentLength "+itoa(int(a.ContentLength+1))+"-1 / "+itoa(int(b.ContentLength+1))+"-1")
	}
	if len(a.TransferEncoding) != len(b.TransferEncoding) {
		d = append(d, "TransferEncoding")
	}
	if a.Close != b.Close {
		d = append(d, "Close")
	}
	ha, hb := a.Header.Clone(), b.Header.Clone()
	if std {
		delete(ha, "Expect")
		delete(ha, "Trailer")
		delete(hb, "Trailer")
		if _, ok := b.Header["Cache-Control"]; !ok {
			delete(ha, "Cache-Control")
		}
	}
	if !maps.EqualFunc(ha, hb, slices.Equal) {
		d = append(d, "header fields differ")
	}
	return strings.Join(d, "; ")
}
