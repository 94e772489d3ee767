package respond

import (
	"encoding/json"
	"flag"
	"html"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"candor/internal/failure"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// testID is a sane request id in NewRequestID's form.
const testID = "4bf92f3577b34da6a3ce929d0e0e4736"

// The expected bodies are built here independently of render.go's escapers:
// JSON through encoding/json, HTML through html.EscapeString. Only the fixed
// HTML markup is shared (testdata/problem.html pins it). Every variable part
// comes from the cause table or the request id and nothing else, which is
// the no-leak property.

func wantBody(t testing.TB, k failure.Kind, f Format, id string) string {
	t.Helper()
	switch f {
	case FormatJSON:
		return wantJSON(t, k, id)
	case FormatHTML:
		return wantHTML(k, id)
	}
	return wantText(k, id)
}

func wantJSON(t testing.TB, k failure.Kind, id string) string {
	t.Helper()
	row := k.Row()
	p := struct {
		Type      string `json:"type"`
		Title     string `json:"title"`
		Status    int    `json:"status"`
		Detail    string `json:"detail"`
		Instance  string `json:"instance"`
		Cause     string `json:"cause"`
		RequestID string `json:"request_id"`
	}{
		Type:      "urn:candor:problem:" + row.ID,
		Title:     row.Title,
		Status:    row.Status,
		Detail:    row.Detail,
		Instance:  "urn:candor:request:" + id,
		Cause:     row.ID,
		RequestID: id,
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

func wantHTML(k failure.Kind, id string) string {
	row := k.Row()
	status := strconv.Itoa(row.Status) + " " + html.EscapeString(row.Title)
	return htmlHead + status + htmlStyle + status + htmlDetail + html.EscapeString(row.Detail) +
		htmlCause + html.EscapeString(row.ID) + htmlReqID + html.EscapeString(id) + htmlTail
}

func wantText(k failure.Kind, id string) string {
	row := k.Row()
	id = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, id)
	return strconv.Itoa(row.Status) + " " + row.Title + "\ncause: " + row.ID + "\nrequest id: " + id + "\n" + row.Detail + "\n"
}

func wantHeader(k failure.Kind, f Format, id, body string) http.Header {
	row := k.Row()
	h := http.Header{
		"Content-Type":           {f.ContentType()},
		"Content-Length":         {strconv.Itoa(len(body))},
		"Cache-Control":          {"no-store"},
		"X-Content-Type-Options": {"nosniff"},
		"X-Request-Id":           {id},
		"Vary":                   {"Accept"},
	}
	if row.RetryAfter > 0 {
		h["Retry-After"] = []string{strconv.Itoa(row.RetryAfter)}
	}
	if f == FormatHTML {
		h["Content-Security-Policy"] = []string{contentSecurityPolicy}
	}
	return h
}

// escapeFor returns s as it appears in a body of format f.
func escapeFor(t testing.TB, f Format, s string) string {
	t.Helper()
	switch f {
	case FormatJSON:
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		return string(b[1 : len(b)-1])
	case FormatHTML:
		return html.EscapeString(s)
	}
	return s
}

// acceptFor is an Accept header that selects f.
func acceptFor(f Format) string {
	switch f {
	case FormatJSON:
		return "application/json"
	case FormatHTML:
		return "text/html"
	}
	return "text/plain"
}

func serve(method, accept string, k failure.Kind, id string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "/", nil)
	if accept != "" {
		r.Header.Set("Accept", accept)
	}
	w := httptest.NewRecorder()
	Problem(w, r, k, id)
	return w
}

func TestGolden(t *testing.T) {
	tests := []struct {
		name string
		f    Format
		file string
	}{
		{name: "json", f: FormatJSON, file: "problem.json"},
		{name: "html", f: FormatHTML, file: "problem.html"},
		{name: "text", f: FormatText, file: "problem.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := serve(http.MethodGet, acceptFor(tt.f), failure.ConnectRefused, testID).Body.String()
			path := filepath.Join("testdata", tt.file)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("body differs from %s (-want +got); rerun with -update if intended:\n%s", path, diff)
			}
		})
	}
}

// TestEveryKind renders every cause in every format, for GET and HEAD, and
// compares status, the whole header and the whole body. Because the expected
// body is built from the table row and the request id alone, this is also
// the no-leak test: nothing else can be in the body.
func TestEveryKind(t *testing.T) {
	for _, k := range failure.Kinds() {
		for f := FormatJSON; f < numFormats; f++ {
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				t.Run(k.String()+"/"+f.String()+"/"+method, func(t *testing.T) {
					w := serve(method, acceptFor(f), k, testID)
					if k.Status() == failure.StatusClientClosed {
						if w.Code != http.StatusOK || len(w.Header()) != 0 || w.Body.Len() != 0 {
							t.Fatalf("a 499 cause wrote something: %d %v %q", w.Code, w.Header(), w.Body)
						}
						return
					}
					if w.Code != k.Status() {
						t.Errorf("status = %d, want %d", w.Code, k.Status())
					}
					body := wantBody(t, k, f, testID)
					if diff := cmp.Diff(wantHeader(k, f, testID, body), w.Header()); diff != "" {
						t.Errorf("header (-want +got):\n%s", diff)
					}
					if method == http.MethodHead {
						body = ""
					}
					if diff := cmp.Diff(body, w.Body.String()); diff != "" {
						t.Errorf("body (-want +got):\n%s", diff)
					}
				})
			}
		}
	}
}

func TestEvery503HasRetryAfter(t *testing.T) {
	for _, k := range failure.Kinds() {
		if k.Status() != http.StatusServiceUnavailable {
			continue
		}
		t.Run(k.String(), func(t *testing.T) {
			w := serve(http.MethodGet, "", k, testID)
			if got, want := w.Header().Get("Retry-After"), strconv.Itoa(k.Row().RetryAfter); got == "" || got != want {
				t.Errorf("Retry-After = %q, want %q", got, want)
			}
		})
	}
}

// TestNoLeak renders with a request id and checks that, once the table's
// strings and the id are removed, only the fixed markup of the format is
// left: the same for every cause.
func TestNoLeak(t *testing.T) {
	for f := FormatJSON; f < numFormats; f++ {
		var skeleton string
		for _, k := range failure.Kinds() {
			if k.Status() == failure.StatusClientClosed {
				continue
			}
			t.Run(f.String()+"/"+k.String(), func(t *testing.T) {
				body := serve(http.MethodGet, acceptFor(f), k, testID).Body.String()
				if diff := cmp.Diff(wantBody(t, k, f, testID), body); diff != "" {
					t.Fatalf("body (-want +got):\n%s", diff)
				}
				row := k.Row()
				s := body
				// Longest first, so that no string is cut by the removal of another.
				for _, v := range []string{row.Detail, row.Title, row.ID, testID, strconv.Itoa(row.Status)} {
					s = strings.ReplaceAll(s, escapeFor(t, f, v), "")
				}
				if skeleton == "" {
					skeleton = s
				}
				if diff := cmp.Diff(skeleton, s); diff != "" {
					t.Errorf("fixed markup differs between causes (-first +this):\n%s", diff)
				}
			})
		}
	}
}

func TestClientCanceledWritesNothing(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	w := httptest.NewRecorder()
	w.Header().Set("X-Upstream", "kept: Problem does not touch w for 499")
	Problem(w, r, failure.ClientCanceled, testID)
	if diff := cmp.Diff(http.Header{"X-Upstream": {"kept: Problem does not touch w for 499"}}, w.Header()); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
	if w.Body.Len() != 0 {
		t.Errorf("body = %q, want none", w.Body)
	}
	// The recorder's Code stays at its default unless WriteHeader was called.
	if w.Code != http.StatusOK || w.Result().StatusCode != http.StatusOK {
		t.Errorf("WriteHeader was called: %d", w.Code)
	}
}

func TestProblemClearsHeaders(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	w := httptest.NewRecorder()
	h := w.Header()
	h.Set("Set-Cookie", "session=upstream")
	h.Set("Content-Encoding", "gzip")
	h.Set("Content-Length", "99999")
	h.Set("Location", "http://10.0.0.7:8080/")
	h.Set("Server", "upstream-1.internal")
	h.Set("Retry-After", "3600")
	h.Set("Trailer", "X-Checksum")
	h.Set("X-Request-Id", testID)
	Problem(w, r, failure.ConnectRefused, testID)
	body := wantJSON(t, failure.ConnectRefused, testID)
	if diff := cmp.Diff(wantHeader(failure.ConnectRefused, FormatJSON, testID, body), w.Header()); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
	// The values share one backing array; adding to one must not touch
	// another.
	w.Header().Add("Vary", "Origin")
	w.Header().Add("Content-Type", "x")
	if got := w.Header()["Cache-Control"]; len(got) != 1 || got[0] != "no-store" {
		t.Errorf("Cache-Control = %q after Add to its neighbours", got)
	}
	if got := w.Header()["Content-Length"]; len(got) != 1 {
		t.Errorf("Content-Length = %q after Add to its neighbours", got)
	}
}

func TestProblemEmptyID(t *testing.T) {
	w := serve(http.MethodGet, "", failure.ResponseTimeout, "")
	id := w.Header().Get("X-Request-Id")
	if !isNewID(id) {
		t.Fatalf("X-Request-Id = %q, want a fresh id", id)
	}
	if diff := cmp.Diff(wantJSON(t, failure.ResponseTimeout, id), w.Body.String()); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
}

// TestHostileIDEscaped calls Problem with ids that RequestID would have
// rejected: Problem must still escape them in every format.
func TestHostileIDEscaped(t *testing.T) {
	tests := []struct {
		name string
		id   string
	}{
		{name: "script", id: `<script>alert(1)</script>`},
		{name: "quotes", id: `"'` + "`"},
		{name: "crlf", id: "a\r\n\r\n<h1>injected"},
		{name: "json breakout", id: `","cause":"forged`},
		{name: "line separator", id: "a\u2028b"},
		{name: "invalid utf8", id: "a\xffb"},
	}
	for _, tt := range tests {
		for f := FormatJSON; f < numFormats; f++ {
			t.Run(tt.name+"/"+f.String(), func(t *testing.T) {
				got := string(Render(nil, failure.ConnectRefused, f, tt.id))
				if diff := cmp.Diff(wantBody(t, failure.ConnectRefused, f, tt.id), got); diff != "" {
					t.Errorf("body (-want +got):\n%s", diff)
				}
				switch f {
				case FormatJSON:
					var p map[string]any
					if err := json.Unmarshal([]byte(got), &p); err != nil {
						t.Fatal(err)
					}
					if p["cause"] != "upstream_connect_refused" || p["request_id"] != strings.ToValidUTF8(tt.id, "\ufffd") {
						t.Errorf("decoded %v", p)
					}
				case FormatHTML:
					if strings.Contains(strings.ToLower(got), "<script") || strings.Contains(got, "<h1>injected") {
						t.Errorf("unescaped markup in %q", got)
					}
				case FormatText:
					if strings.Count(got, "\n") != 4 || strings.Contains(got, "\r") {
						t.Errorf("id added lines: %q", got)
					}
				}
			})
		}
	}
}

func TestFormatString(t *testing.T) {
	got := []string{FormatJSON.String(), FormatHTML.String(), FormatText.String(), Format(9).String(), Format(9).ContentType()}
	want := []string{"json", "html", "text", "format(9)", contentTypeText}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// discardWriter is a ResponseWriter that keeps nothing but its header map,
// so that benchmarks count Problem's allocations only.
type discardWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *discardWriter) Header() http.Header  { return w.h }
func (w *discardWriter) WriteHeader(code int) { w.status = code }
func (w *discardWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	return len(p), nil
}
func (w *discardWriter) WriteString(s string) (int, error) {
	w.n += len(s)
	return len(s), nil
}

func TestProblemAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector adds allocations")
	}
	tests := []struct {
		name   string
		accept string
		k      failure.Kind
	}{
		{name: "json", accept: "", k: failure.ConnectRefused},
		{name: "json retry-after", accept: "application/json", k: failure.NoHealthyUpstream},
		{name: "html", accept: chromeAccept, k: failure.NoHealthyUpstream},
		{name: "text", accept: "text/plain", k: failure.ResponseTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header.Set("Accept", tt.accept)
			w := &discardWriter{h: make(http.Header)}
			n := testing.AllocsPerRun(100, func() { Problem(w, r, tt.k, testID) })
			if n > 2 {
				t.Errorf("Problem allocates %v times, want at most 2", n)
			}
		})
	}
}

func benchmarkProblem(b *testing.B, accept string, k failure.Kind) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if accept != "" {
		r.Header.Set("Accept", accept)
	}
	w := &discardWriter{h: make(http.Header)}
	Problem(w, r, k, testID) // warm the header map, as net/http's is reused per connection
	b.ReportAllocs()
	for b.Loop() {
		Problem(w, r, k, testID)
	}
}

func BenchmarkProblemJSON(b *testing.B) {
	benchmarkProblem(b, "", failure.ConnectRefused)
}

func BenchmarkProblemJSONRetryAfter(b *testing.B) {
	benchmarkProblem(b, "application/json", failure.NoHealthyUpstream)
}

func BenchmarkProblemHTML(b *testing.B) {
	benchmarkProblem(b, chromeAccept, failure.ConnectRefused)
}

func BenchmarkRender(b *testing.B) {
	buf := make([]byte, 0, 4096)
	for f := FormatJSON; f < numFormats; f++ {
		b.Run(f.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buf = Render(buf[:0], failure.ConnectRefused, f, testID)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}
