package respond

import (
	"encoding/json"
	"html"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"candor/internal/failure"
)

// escapeInputs are strings that exercise every branch of the escapers.
func escapeInputs() []string {
	in := []string{
		"", "plain", `"`, `\`, `<script>`, "a&b", "'", "\u2028\u2029", "\xff", "a\xc3", "\xed\xa0\x80",
		"é€😀", "\x7f", "tab\there", "\b\f\n\r\t", `</script><!--`, "\x00", "ok\u2027\u202a",
	}
	for c := 0; c < 256; c++ {
		in = append(in, string([]byte{'a', byte(c), 'b'}), string([]byte{byte(c)}))
	}
	return in
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range escapeInputs() {
		t.Run(strconv.Quote(s), func(t *testing.T) { checkJSONString(t, s) })
	}
}

func checkJSONString(t *testing.T, s string) {
	want, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	got := appendJSONString(nil, "", s)
	if string(got) != string(want) {
		t.Errorf("appendJSONString(%q) = %s, want %s", s, got, want)
	}
	if got := appendJSONString([]byte("x"), "urn:", s); string(got) != "x"+`"urn:`+string(want[1:]) {
		t.Errorf("appendJSONString with prefix = %s", got)
	}
}

func TestAppendHTMLEscaped(t *testing.T) {
	for _, s := range escapeInputs() {
		t.Run(strconv.Quote(s), func(t *testing.T) { checkHTMLEscaped(t, s) })
	}
}

func checkHTMLEscaped(t *testing.T, s string) {
	if got, want := string(appendHTMLEscaped(nil, s)), html.EscapeString(s); got != want {
		t.Errorf("appendHTMLEscaped(%q) = %q, want %q", s, got, want)
	}
}

// FuzzEscape checks the hand-written escapers against the standard
// library's.
func FuzzEscape(f *testing.F) {
	for _, s := range escapeInputs() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkJSONString(t, s)
		checkHTMLEscaped(t, s)
		if got := string(appendTextSafe(nil, s)); strings.ContainsAny(got, "\r\n\x00\x7f") {
			t.Errorf("appendTextSafe(%q) = %q", s, got)
		}
	})
}

// FuzzProblem renders a fuzzed cause for a fuzzed Accept header and a fuzzed
// client X-Request-Id, the way the proxy does: the id goes through RequestID
// first. Invariants: no panic; the status is the table's; the body is
// exactly the one built from the table row and the sanitized id; JSON is
// valid with the right cause; HTML has no script element; the client's id
// reaches the response only when it is sane.
func FuzzProblem(f *testing.F) {
	f.Add("", testID, uint8(failure.ConnectRefused))
	f.Add(chromeAccept, "<script>alert(1)</script>", uint8(failure.NoHealthyUpstream))
	f.Add("text/plain", "a\r\nSet-Cookie: x=y", uint8(failure.ResponseTimeout))

	// Bytes that a rendered body can contain at all: the fixed markup, the
	// table strings and a fresh id's hex digits. A client id with any other
	// byte can only be in the body if it was echoed.
	var emittable [256]bool
	for _, k := range failure.Kinds() {
		for ft := FormatJSON; ft < numFormats; ft++ {
			for _, c := range Render(nil, k, ft, hexDigits) {
				emittable[c] = true
			}
		}
	}

	f.Fuzz(func(t *testing.T, accept, clientID string, kind uint8) {
		k := failure.Kind(kind) // out of range: KindUnknown's row
		in := http.Header{"X-Request-Id": {clientID}}
		id := RequestID(in)
		sane := ValidRequestID(clientID)
		if sane != (id == clientID) {
			t.Fatalf("RequestID(%q) = %q; ValidRequestID = %v", clientID, id, sane)
		}
		if !sane && !isNewID(id) {
			t.Fatalf("RequestID(%q) = %q, want a fresh id", clientID, id)
		}

		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header["Accept"] = []string{accept}
		w := httptest.NewRecorder()
		Problem(w, r, k, id)
		body := w.Body.String()

		row := k.Row()
		if row.Status == failure.StatusClientClosed {
			if w.Code != http.StatusOK || len(w.Header()) != 0 || body != "" {
				t.Fatalf("a 499 cause wrote something: %d %v %q", w.Code, w.Header(), body)
			}
			return
		}
		if w.Code != row.Status {
			t.Fatalf("status = %d, want %d", w.Code, row.Status)
		}
		if got := w.Header().Get("X-Request-Id"); got != id {
			t.Fatalf("X-Request-Id = %q, want %q", got, id)
		}
		ft := Negotiate(r.Header)
		if got := w.Header().Get("Content-Type"); got != ft.ContentType() {
			t.Fatalf("Content-Type = %q, want %q", got, ft.ContentType())
		}
		if want := wantBody(t, k, ft, id); body != want {
			t.Fatalf("body = %q\nwant %q", body, want)
		}
		switch ft {
		case FormatJSON:
			if !json.Valid([]byte(body)) {
				t.Fatalf("invalid JSON: %q", body)
			}
			var p struct {
				Cause  string `json:"cause"`
				Status int    `json:"status"`
			}
			if err := json.Unmarshal([]byte(body), &p); err != nil {
				t.Fatal(err)
			}
			if p.Cause != k.String() || p.Status != row.Status {
				t.Fatalf("cause, status = %q, %d; want %q, %d", p.Cause, p.Status, k.String(), row.Status)
			}
		case FormatHTML:
			if strings.Contains(strings.ToLower(body), "<script") {
				t.Fatalf("HTML contains <script: %q", body)
			}
		}
		if !utf8.ValidString(body) {
			t.Fatalf("body is not UTF-8: %q", body)
		}
		if !sane && clientID != "" {
			echoable := true
			for i := 0; i < len(clientID); i++ {
				echoable = echoable && emittable[clientID[i]]
			}
			if !echoable && strings.Contains(body, clientID) {
				t.Fatalf("body echoes the rejected client id %q: %q", clientID, body)
			}
		}
	})
}
