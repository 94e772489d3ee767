package respond

import (
	"net/http"
	"strings"
	"testing"
)

// Accept headers real clients send.
const (
	chromeAccept  = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
	firefoxAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	safariAccept  = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	chromeImage   = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
	jqueryJSON    = "application/json, text/javascript, */*; q=0.01"
	axiosAccept   = "application/json, text/plain, */*"
	httpieAccept  = "application/json, */*;q=0.5"
)

func TestNegotiate(t *testing.T) {
	tests := []struct {
		name   string
		accept []string // nil: no Accept field
		want   Format
	}{
		{name: "no Accept (Go net/http client)", accept: nil, want: FormatJSON},
		{name: "empty Accept", accept: []string{""}, want: FormatJSON},
		{name: "curl, wget, fetch(), python-requests", accept: []string{"*/*"}, want: FormatJSON},
		{name: "Chrome navigation", accept: []string{chromeAccept}, want: FormatHTML},
		{name: "Firefox navigation", accept: []string{firefoxAccept}, want: FormatHTML},
		{name: "Safari navigation", accept: []string{safariAccept}, want: FormatHTML},
		{name: "Chrome image subresource", accept: []string{chromeImage}, want: FormatJSON},
		{name: "jQuery getJSON", accept: []string{jqueryJSON}, want: FormatJSON},
		{name: "axios", accept: []string{axiosAccept}, want: FormatJSON},
		{name: "HTTPie", accept: []string{httpieAccept}, want: FormatJSON},
		{name: "problem+json", accept: []string{"application/problem+json"}, want: FormatJSON},
		{name: "application/*", accept: []string{"application/*"}, want: FormatJSON},
		{name: "image only", accept: []string{"image/png"}, want: FormatText},
		{name: "text/plain", accept: []string{"text/plain"}, want: FormatText},
		{name: "text/* prefers html", accept: []string{"text/*"}, want: FormatHTML},
		{name: "tie goes to json", accept: []string{"text/html;q=0.9, application/json;q=0.9"}, want: FormatJSON},
		{name: "html preferred over json", accept: []string{"application/json;q=0.5, text/html"}, want: FormatHTML},
		{name: "json refused, anything else", accept: []string{"application/json;q=0, */*"}, want: FormatHTML},
		{name: "problem+json refused beats json alias", accept: []string{"application/problem+json;q=0, application/json, text/plain;q=0.5"}, want: FormatText},
		{name: "html refused", accept: []string{"text/html;q=0, */*"}, want: FormatJSON},
		{name: "everything refused", accept: []string{"*/*;q=0"}, want: FormatText},
		{name: "specific q overrides wildcard", accept: []string{"*/*;q=0.1, text/plain;q=0.5"}, want: FormatText},
		{name: "q=0.001 still acceptable", accept: []string{"text/html;q=0.001"}, want: FormatHTML},
		{name: "case insensitive type", accept: []string{"TEXT/HTML"}, want: FormatHTML},
		{name: "case insensitive q", accept: []string{"text/html;Q=0.5, application/json;q=0.4"}, want: FormatHTML},
		{name: "whitespace", accept: []string{" text/plain ; q=0.5 ,\tapplication/json ; q=0.4 "}, want: FormatText},
		{name: "parameters ignored", accept: []string{"text/html;level=1;charset=utf-8"}, want: FormatHTML},
		{name: "equal specificity: highest q", accept: []string{"text/html;level=1;q=0, text/html;q=0.5"}, want: FormatHTML},
		{name: "params after q ignored", accept: []string{"text/html;q=0.5;ext=1, application/json;q=0.4"}, want: FormatHTML},
		{name: "quoted comma", accept: []string{`text/html;foo="a,b;q=0", text/plain;q=0.5`}, want: FormatHTML},
		{name: "several field lines", accept: []string{"text/plain;q=0.5", "text/html"}, want: FormatHTML},
		{name: "empty elements", accept: []string{",, ,text/html,,"}, want: FormatHTML},
		{name: "malformed: q too big", accept: []string{"text/html;q=2, text/plain;q=0.1"}, want: FormatText},
		{name: "malformed: q 4 decimals", accept: []string{"text/html;q=0.1234, text/plain;q=0.1"}, want: FormatText},
		{name: "malformed: q=1.5", accept: []string{"text/html;q=1.5, text/plain;q=0.1"}, want: FormatText},
		{name: "malformed: q not a number", accept: []string{"text/html;q=abc"}, want: FormatJSON},
		{name: "malformed: empty q", accept: []string{"text/html;q="}, want: FormatJSON},
		{name: "malformed: no slash", accept: []string{"html, text/plain"}, want: FormatText},
		{name: "malformed: */subtype", accept: []string{"*/html, text/plain"}, want: FormatText},
		{name: "malformed: parameter without value", accept: []string{"text/html;level, text/plain"}, want: FormatText},
		{name: "malformed: unterminated quote", accept: []string{`text/plain, text/html;a="x`}, want: FormatText},
		{name: "malformed: space inside type", accept: []string{"text /html, text/plain"}, want: FormatText},
		{name: "malformed only", accept: []string{"garbage;;;,==,/"}, want: FormatJSON},
		{name: "q=1.000 valid", accept: []string{"text/html;q=1.000"}, want: FormatHTML},
		{name: "q=0. valid", accept: []string{"text/html;q=0., text/plain;q=0.1"}, want: FormatText},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.accept != nil {
				h["Accept"] = tt.accept
			}
			if got := Negotiate(h); got != tt.want {
				t.Errorf("Negotiate(%q) = %v, want %v", tt.accept, got, tt.want)
			}
		})
	}
}

func TestNegotiateBounds(t *testing.T) {
	// A range cut by the byte limit is dropped whole: read as "q=0" it would
	// refuse JSON.
	pad := "x/y;p=" + strings.Repeat("a", 2017)
	cut := "*/*," + pad + ",application/json;q=0.9"
	if i := strings.Index(cut, "q=0.9"); i+3 != maxAcceptBytes {
		t.Fatalf("bad test: the cut falls at %d", i+3)
	}
	tests := []struct {
		name   string
		accept []string
		want   Format
	}{
		{name: "range cut at the byte limit is dropped", accept: []string{cut}, want: FormatJSON},
		{name: "ranges past the count limit are ignored", accept: []string{strings.Repeat("a/b,", maxAcceptRanges) + "text/html"}, want: FormatText},
		{name: "the last range within the count limit counts", accept: []string{strings.Repeat("a/b,", maxAcceptRanges-1) + "text/html"}, want: FormatHTML},
		{name: "byte limit spans field lines", accept: []string{"text/plain", strings.Repeat("a", maxAcceptBytes), "text/html"}, want: FormatText},
		{name: "1 MB of commas", accept: []string{"text/plain" + strings.Repeat(",", 1<<20) + "text/html"}, want: FormatText},
		{name: "1 MB field, html first", accept: []string{"text/html," + strings.Repeat("x", 1<<20)}, want: FormatHTML},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Negotiate(http.Header{"Accept": tt.accept}); got != tt.want {
				t.Errorf("Negotiate = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseQ(t *testing.T) {
	tests := []struct {
		in   string
		want weight
		ok   bool
	}{
		{"0", 0, true}, {"1", 1000, true}, {"0.", 0, true}, {"1.", 1000, true},
		{"0.5", 500, true}, {"0.05", 50, true}, {"0.123", 123, true}, {"0.999", 999, true},
		{"1.0", 1000, true}, {"1.000", 1000, true},
		{"", 0, false}, {"1.001", 0, false}, {"2", 0, false}, {"0.1234", 0, false},
		{".5", 0, false}, {"0,5", 0, false}, {"0.5x", 0, false}, {"-0", 0, false}, {"01", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := parseQ(tt.in)
			if got != tt.want || ok != tt.ok {
				t.Errorf("parseQ(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestNegotiateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector adds allocations")
	}
	h := http.Header{"Accept": {chromeAccept}}
	if n := testing.AllocsPerRun(100, func() { Negotiate(h) }); n != 0 {
		t.Errorf("Negotiate allocates %v times", n)
	}
}

func BenchmarkNegotiate(b *testing.B) {
	tests := []struct {
		name   string
		accept []string
	}{
		{name: "none", accept: nil},
		{name: "curl", accept: []string{"*/*"}},
		{name: "axios", accept: []string{axiosAccept}},
		{name: "chrome", accept: []string{chromeAccept}},
		{name: "hostile_64KB", accept: []string{strings.Repeat("a/b;c=d,", 8192)}},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.accept != nil {
			h["Accept"] = tt.accept
		}
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Negotiate(h)
			}
		})
	}
}

func TestTchar(t *testing.T) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		want := 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
		if got := isTchar(b); got != want {
			t.Errorf("isTchar(%q) = %v, want %v", b, got, want)
		}
	}
}
