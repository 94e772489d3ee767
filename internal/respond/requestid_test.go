package respond

import (
	"net/http"
	"strings"
	"testing"
)

// isNewID reports whether id has NewRequestID's form.
func isNewID(id string) bool {
	if len(id) != 32 || id == strings.Repeat("0", 32) {
		return false
	}
	for i := 0; i < len(id); i++ {
		if strings.IndexByte(hexDigits, id[i]) < 0 {
			return false
		}
	}
	return true
}

func TestRequestID(t *testing.T) {
	tests := []struct {
		name   string
		values []string // nil: no X-Request-Id
		keep   bool     // the client's id is adopted
	}{
		{name: "uuid", values: []string{"9b2c4e1a-3f6d-4c8e-a1b2-0c9d8e7f6a5b"}, keep: true},
		{name: "trace id", values: []string{testID}, keep: true},
		{name: "every allowed character", values: []string{"azAZ09._:+/=-"}, keep: true},
		{name: "one byte", values: []string{"a"}, keep: true},
		{name: "128 bytes", values: []string{strings.Repeat("a", 128)}, keep: true},
		{name: "absent", values: nil},
		{name: "empty", values: []string{""}},
		{name: "129 bytes", values: []string{strings.Repeat("a", 129)}},
		{name: "10 KB", values: []string{strings.Repeat("a", 10<<10)}},
		{name: "script", values: []string{"<script>alert(1)</script>"}},
		{name: "double quote", values: []string{`abc"def`}},
		{name: "single quote", values: []string{"abc'def"}},
		{name: "CRLF header injection", values: []string{"abc\r\nSet-Cookie: a=b"}},
		{name: "LF", values: []string{"abc\ndef"}},
		{name: "NUL", values: []string{"abc\x00"}},
		{name: "space", values: []string{"abc def"}},
		{name: "leading space", values: []string{" abc"}},
		{name: "non-ASCII", values: []string{"réquest"}},
		{name: "invalid UTF-8", values: []string{"abc\xff"}},
		{name: "two values", values: []string{"abc", "def"}},
		{name: "comma list", values: []string{"abc,def"}},
		{name: "percent", values: []string{"abc%0d%0a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.values != nil {
				h["X-Request-Id"] = tt.values
			}
			got := RequestID(h)
			if tt.keep {
				if got != tt.values[0] {
					t.Errorf("RequestID = %q, want the client's %q", got, tt.values[0])
				}
				return
			}
			if !isNewID(got) {
				t.Errorf("RequestID = %q, want a fresh id", got)
			}
			// A fresh id is 32 random hex digits, which may contain a
			// short client value ("def") by chance: only equality is an
			// echo.
			for _, v := range tt.values {
				if got == v {
					t.Errorf("RequestID = %q echoes the client's %q", got, v)
				}
			}
		})
	}
}

func TestValidRequestID(t *testing.T) {
	for c := 0; c < 256; c++ {
		want := strings.IndexByte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:+/=-", byte(c)) >= 0
		if got := ValidRequestID(string([]byte{'x', byte(c), 'y'})); got != want {
			t.Errorf("ValidRequestID with byte %#x = %v, want %v", c, got, want)
		}
	}
}

func TestNewRequestID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewRequestID()
		if !isNewID(id) {
			t.Fatalf("NewRequestID() = %q: not 32 lowercase hex digits", id)
		}
		if !ValidRequestID(id) {
			t.Fatalf("NewRequestID() = %q is not a valid request id", id)
		}
		if seen[id] {
			t.Fatalf("NewRequestID() repeated %q", id)
		}
		seen[id] = true
	}
	if n := testing.AllocsPerRun(100, func() { NewRequestID() }); n != 1 && !raceEnabled {
		t.Errorf("NewRequestID allocates %v times, want 1", n)
	}
}

func BenchmarkNewRequestID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		NewRequestID()
	}
}

func BenchmarkRequestID(b *testing.B) {
	b.Run("client", func(b *testing.B) {
		h := http.Header{"X-Request-Id": {"9b2c4e1a-3f6d-4c8e-a1b2-0c9d8e7f6a5b"}}
		b.ReportAllocs()
		for b.Loop() {
			RequestID(h)
		}
	})
	b.Run("fresh", func(b *testing.B) {
		h := http.Header{}
		b.ReportAllocs()
		for b.Loop() {
			RequestID(h)
		}
	})
}
