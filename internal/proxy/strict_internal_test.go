package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"strings"
	"testing"
	"testing/iotest"

	"candor/internal/upstream"
)

// isJSONReference is isJSON as first written, with mime.ParseMediaType:
// the allocation-free isJSON must decide exactly as it does.
func isJSONReference(value string) bool {
	mt, _, err := mime.ParseMediaType(value)
	if mt == "" && err != nil {
		mt = strings.ToLower(strings.TrimSpace(strings.Split(value, ";")[0]))
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

func TestIsJSONMatchesParseMediaType(t *testing.T) {
	values := []string{
		"application/json", "Application/JSON", " application/json ", "application/json; charset=utf-8",
		"application/json; charset", "application/json;;", "application/problem+json", "APPLICATION/PROBLEM+JSON",
		"text/json", "application/jsonx", "application/x-json", "+json", "json", "", " ", ";", "application/json garbage",
		"application/ json", "applİcation/json", "application/jſon", "application/x+jſon", "application/x+JSON\t",
		"\u00a0application/json", "application/json\u00a0", "application/vnd.api+json; ext=\"x\"", "text/plain",
		"application/json\x00", "*/*+json", "a/b+json;q", "ÀPPLICATION/JSON",
	}
	for _, v := range values {
		fields := []upstream.Field{{Name: "Content-Type", Value: v}}
		if got, want := isJSON(fields), isJSONReference(v); got != want {
			t.Errorf("isJSON(%q) = %v, want %v", v, got, want)
		}
	}
}

// readLimitedReference is readLimited as first written, with bytes.Buffer.
func readLimitedReference(body io.Reader, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, errTooLarge
	}
	return buf.Bytes(), nil
}

// countingReader counts the bytes read from r.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestReadLimitedMatchesReference(t *testing.T) {
	errBroken := errors.New("broken")
	for _, size := range []int{0, 1, 100, 511, 512, 513, 4095, 4096, 4097, 40000} {
		data := bytes.Repeat([]byte("0123456789"), size/10+1)[:size]
		for _, limit := range []int64{0, 1, 100, 512, 4096, 8192, 1 << 20} {
			for _, declared := range []int64{-1, int64(size)} {
				for _, bufCap := range []int{0, 64, 4096} {
					for _, broken := range []bool{false, true} {
						src := func() io.Reader {
							var r io.Reader = bytes.NewReader(data)
							if broken {
								r = io.MultiReader(r, iotest.ErrReader(errBroken))
							}
							return iotest.HalfReader(r)
						}
						want, wantErr := readLimitedReference(src(), limit)
						cr := &countingReader{r: src()}
						got, err := readLimited(cr, limit, make([]byte, 0, bufCap), declared)
						if !errors.Is(err, wantErr) || !bytes.Equal(got, want) {
							t.Fatalf("size %d limit %d declared %d cap %d broken %v: got %d bytes, %v; want %d bytes, %v",
								size, limit, declared, bufCap, broken, len(got), err, len(want), wantErr)
						}
						if wantErr == errTooLarge && int64(cr.n) != limit+1 {
							t.Fatalf("size %d limit %d: read %d bytes past the limit, want exactly %d", size, limit, cr.n, limit+1)
						}
					}
				}
			}
		}
	}
}

// jsonSeeds are documents at the edges of the JSON grammar.
var jsonSeeds = []string{
	``, ` `, `0`, `-0`, `-`, `01`, `1.`, `1.5`, `.5`, `1e5`, `1E+5`, `1e-5`, `1e`, `1e+`, `-1.5e10`, `+1`, `1 2`,
	`true`, `false`, `null`, `tru`, `truex`, `nul`, `True`, `"`, `""`, `"a`, `"\"`, `"\\"`, `"\/"`, `"\b\f\n\r\t"`,
	`"\u00e9"`, `"\u00G9"`, `"\u00e"`, `"\x"`, "\"\x01\"", "\"\x7f\"", "\"\xff\xfe\"", "\"\t\"",
	`{}`, `{ }`, `[]`, `[ ]`, `{"a":1}`, `{"a" : 1 , "b":[1,2,{"c":null}]}`, `{"a":1,}`, `[1,]`, `[,1]`, `{,}`,
	`{"a"}`, `{"a":}`, `{1:2}`, `{"a":1 "b":2}`, `[1 2]`, `[1,,2]`, `{"a":[}`, `[}`, `{]`, `]`, `}`, `[[[]]]`,
	" \t\r\n[1]\n", "[1]\v", "\ufeff[]", `[1]]`, `{"a":{"b":{}}}}`, `"a"b`, `0.0e0`, `-01`, `[-]`, `[0x1]`,
}

func FuzzValidJSON(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	f.Add(benchJSONDoc(4096))
	f.Fuzz(func(t *testing.T, data []byte) {
		if got, want := validJSON(data), json.Valid(data); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid says %v", data, got, want)
		}
	})
}

// TestValidJSONDepth checks the nesting limit, which the fuzzer is unlikely
// to reach.
func TestValidJSONDepth(t *testing.T) {
	for _, depth := range []int{maxJSONDepth - 1, maxJSONDepth, maxJSONDepth + 1} {
		for _, open := range []string{"[", `{"k":`} {
			close := "]"
			if open != "[" {
				close = "}"
			}
			doc := []byte(strings.Repeat(open, depth) + "1" + strings.Repeat(close, depth))
			if got, want := validJSON(doc), json.Valid(doc); got != want {
				t.Errorf("depth %d of %s: validJSON %v, json.Valid %v", depth, open, got, want)
			}
			mixed := []byte(strings.Repeat(`[{"k":`, depth/2) + "[]" + strings.Repeat(`}]`, depth/2))
			if got, want := validJSON(mixed), json.Valid(mixed); got != want {
				t.Errorf("mixed depth %d: validJSON %v, json.Valid %v", depth, got, want)
			}
		}
	}
}

// benchJSONDoc returns a valid JSON document of about n bytes.
func benchJSONDoc(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"items":[`)
	for i := 0; b.Len() < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"id":-12.5e3,"name":"it\"em\u00e9","ok":true,"none":null,"list":[1,2,3]}`)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

func BenchmarkValidJSON(b *testing.B) {
	doc := benchJSONDoc(16 << 10)
	for _, fn := range []struct {
		name string
		f    func([]byte) bool
	}{{"candor", validJSON}, {"encoding_json", json.Valid}} {
		b.Run(fn.name, func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for b.Loop() {
				if !fn.f(doc) {
					b.Fatal("invalid")
				}
			}
		})
	}
}
