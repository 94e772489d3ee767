package fault

import (
	"bufio"
	"bytes"
	"io"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"testing"

	"candor/internal/failure"
)

// requiredScripts are the scripts other packages' tests and the demo rely on.
var requiredScripts = []string{
	"upstream_malformed_status_line/garbage",
	"upstream_malformed_status_line/code_4_digits",
	"upstream_malformed_status_line/code_2_digits",
	"upstream_malformed_status_line/code_099",
	"upstream_malformed_status_line/code_600",
	"upstream_malformed_status_line/code_000",
	"upstream_malformed_status_line/code_alpha",
	"upstream_malformed_status_line/version_2_0",
	"upstream_malformed_status_line/version_lowercase",
	"upstream_malformed_status_line/no_sp_after_code",
	"upstream_malformed_status_line/double_sp",
	"upstream_malformed_status_line/nul_in_reason",
	"upstream_malformed_status_line/bare_lf",
	"upstream_malformed_status_line/bare_cr",
	"upstream_malformed_header/no_colon",
	"upstream_malformed_header/space_before_colon",
	"upstream_malformed_header/name_at_sign",
	"upstream_malformed_header/name_space",
	"upstream_malformed_header/empty_name",
	"upstream_malformed_header/nul_in_value",
	"upstream_malformed_header/cr_in_value",
	"upstream_malformed_header/ctl_in_value",
	"upstream_malformed_header/obs_fold",
	"upstream_malformed_header/bare_lf",
	"upstream_invalid_framing/cl_and_chunked",
	"upstream_invalid_framing/cl_conflict",
	"upstream_invalid_framing/cl_list_conflict",
	"upstream_invalid_framing/cl_plus",
	"upstream_invalid_framing/cl_negative",
	"upstream_invalid_framing/cl_hex",
	"upstream_invalid_framing/cl_empty",
	"upstream_invalid_framing/cl_overflow",
	"upstream_invalid_framing/te_gzip",
	"upstream_invalid_framing/te_chunked_gzip",
	"upstream_invalid_framing/te_gzip_chunked",
	"upstream_invalid_framing/te_chunked_chunked",
	"upstream_invalid_framing/te_xchunked",
	"upstream_invalid_framing/http10_chunked",
	"upstream_head_too_large/huge_value",
	"upstream_head_too_large/many_fields",
	"upstream_truncated_head/partial_status_line",
	"upstream_truncated_head/status_line_only",
	"upstream_truncated_head/mid_headers",
	"upstream_unexpected_upgrade/switching_protocols",
	"upstream_protocol_mismatch/h2_settings",
	"upstream_protocol_mismatch/tls_alert",
	"upstream_truncated_body/content_length_short",
	"upstream_truncated_body/chunked_no_last_chunk",
	"upstream_malformed_chunk/size_not_hex",
	"upstream_malformed_chunk/size_bare_lf",
	"upstream_malformed_chunk/data_too_long",
	"upstream_malformed_chunk/size_overflow",
	"upstream_malformed_chunk/size_negative",
	"upstream_malformed_chunk/trailer_no_colon",
	"pass/ok_json",
	"pass/invalid_json",
	"pass/status_404",
	"pass/status_500",
	"pass/status_502",
	"pass/status_503",
	"pass/no_content_204",
	"pass/not_modified_304",
	"pass/content_length_exact",
	"pass/cl_list_same",
	"pass/cl_repeated_same",
	"pass/chunked_trailer",
	"pass/chunk_extensions",
	"pass/http10_close_delimited",
	"pass/http10_content_length",
	"pass/no_reason_phrase",
	"pass/empty_reason_phrase",
	"pass/early_hints_103",
}

func TestScriptsCatalog(t *testing.T) {
	scripts := Scripts()
	var names []string
	for _, s := range scripts {
		names = append(names, s.Name)
		if s.Cause != CausePass {
			if _, ok := failure.Lookup(s.Cause); !ok {
				t.Errorf("%s: directory %q is not a cause id of package failure", s.Name, s.Cause)
			}
		}
		if !strings.HasPrefix(s.Name, s.Cause+"/") {
			t.Errorf("%s: Cause %q does not match the name", s.Name, s.Cause)
		}
		if len(s.Bytes) == 0 {
			t.Errorf("%s: empty script", s.Name)
		}
		got, ok := Lookup(s.Name)
		if !ok || got.Name != s.Name || got.Cause != s.Cause || !bytes.Equal(got.Bytes, s.Bytes) {
			t.Errorf("Lookup(%q) = %q, %v; want the catalog entry", s.Name, got.Name, ok)
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("Scripts() is not sorted by name: %q", names)
	}
	if len(slices.Compact(slices.Clone(names))) != len(names) {
		t.Errorf("Scripts() has duplicate names: %q", names)
	}
	for _, want := range requiredScripts {
		if !slices.Contains(names, want) {
			t.Errorf("required script %q missing", want)
		}
	}
}

// TestScriptsFiles checks that every embedded file is in the catalog and
// that the built scripts are as large as documented.
func TestScriptsFiles(t *testing.T) {
	err := fs.WalkDir(upstreamFS, scriptRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel := strings.TrimPrefix(p, scriptRoot+"/")
		switch {
		case rel == "README.md":
		case strings.Count(rel, "/") == 1 && strings.HasSuffix(rel, scriptExt):
			if _, ok := Lookup(strings.TrimSuffix(rel, scriptExt)); !ok {
				t.Errorf("%s is not in the catalog", p)
			}
		default:
			t.Errorf("%s: want testdata/upstream/<cause>/<name>.http", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	huge, _ := Lookup("upstream_head_too_large/huge_value")
	if len(huge.Bytes) <= 64<<10 {
		t.Errorf("huge_value is %d bytes", len(huge.Bytes))
	}
	many, _ := Lookup("upstream_head_too_large/many_fields")
	if n := bytes.Count(many.Bytes, []byte("\r\nX-Field-")); n != manyFields {
		t.Errorf("many_fields has %d fields, want %d", n, manyFields)
	}
}

func TestLookupMisses(t *testing.T) {
	for _, name := range []string{
		"", "pass", "pass/", "/ok_json", "pass/ok_json.http", "pass/../pass/ok_json",
		"nope/ok_json", "pass/nope", "pass/ok_json/x", "upstream_head_too_large/nope", "README.md",
	} {
		if s, ok := Lookup(name); ok {
			t.Errorf("Lookup(%q) = %q, want a miss", name, s.Name)
		}
	}
}

func TestLookupReturnsCopies(t *testing.T) {
	a, _ := Lookup("pass/ok_json")
	a.Bytes[0] = 'X'
	b, _ := Lookup("pass/ok_json")
	if b.Bytes[0] != 'H' {
		t.Fatal("Lookup shares its bytes between calls")
	}
}

// stdlibDivergences lists pass scripts that net/http's lenient-here,
// strict-there parser rejects although RFC 9110/9112 allow them, with the
// rewrite that makes them acceptable to it for the sanity check.
var stdlibDivergences = map[string][2]string{
	// RFC 9110 §8.6 lets a recipient accept a list of identical values;
	// net/http accepts repeated fields but not the list.
	"pass/cl_list_same": {"Content-Length: 5, 5\r\n", "Content-Length: 5\r\n"},
}

// TestPassScriptsParse checks, as a sanity check, that net/http reads every
// pass script as one complete response (after any interim 1xx responses)
// whose body reads fully and leaves no byte over.
func TestPassScriptsParse(t *testing.T) {
	for _, s := range Scripts() {
		if s.Cause != CausePass {
			continue
		}
		t.Run(s.Name, func(t *testing.T) {
			b := s.Bytes
			if r, ok := stdlibDivergences[s.Name]; ok {
				b = bytes.Replace(b, []byte(r[0]), []byte(r[1]), 1)
			}
			br := bufio.NewReader(bytes.NewReader(b))
			req, _ := http.NewRequest(http.MethodGet, "http://upstream.test/", nil)
			var resp *http.Response
			for range 10 {
				var err error
				if resp, err = http.ReadResponse(br, req); err != nil {
					t.Fatalf("ReadResponse: %v", err)
				}
				if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
					break
				}
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("reading the body: %v", err)
			}
			if err := resp.Body.Close(); err != nil {
				t.Fatal(err)
			}
			if rest, _ := io.ReadAll(br); len(rest) > 0 {
				t.Errorf("%d bytes after the response: %q", len(rest), rest)
			}
			if resp.StatusCode < 200 {
				t.Errorf("final status %d", resp.StatusCode)
			}
			if s.Name == "pass/chunked_trailer" && resp.Trailer.Get("X-Checksum") == "" {
				t.Errorf("trailer lost: %v", resp.Trailer)
			}
			t.Logf("%d, %d body bytes", resp.StatusCode, len(body))
		})
	}
}
