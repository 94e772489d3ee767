package fault

import (
	"embed"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// upstreamFS holds the byte-exact scripts. The go tool embeds a directory
// named testdata like any other; .gitattributes marks *.http binary so that
// git never rewrites their CRLFs.
//
//go:embed testdata/upstream
var upstreamFS embed.FS

const (
	scriptRoot = "testdata/upstream"
	scriptExt  = ".http"

	// CausePass is the [Script.Cause] of a valid response: a strict gateway
	// must pass it through unchanged (status, headers minus hop-by-hop, and
	// body).
	CausePass = "pass"

	// causeHeadTooLarge is the directory of the scripts built in code (see
	// [builtScripts]).
	causeHeadTooLarge = "upstream_head_too_large"
)

// Script is one raw upstream byte stream: exactly what the fake upstream
// writes after it has read the request head (and body), before it closes the
// connection.
type Script struct {
	// Name is "<cause>/<file name without .http>", e.g.
	// "upstream_malformed_header/obs_fold". [Lookup] takes it and the server
	// serves it at /script/<Name>.
	Name string
	// Cause is the cause id (a [candor/internal/failure.Kind] String) a
	// strict gateway must report for this stream, or [CausePass] for a valid
	// response.
	Cause string
	// Bytes is the stream. Every call of [Scripts] or [Lookup] returns a
	// fresh copy, which the caller may modify.
	Bytes []byte
}

// Scripts returns the whole catalog sorted by Name: every embedded
// testdata/upstream/<cause>/<name>.http file plus the scripts built in code
// (the oversized heads of upstream_head_too_large).
func Scripts() []Script {
	var out []Script
	// The embedded tree is fixed at build time, so WalkDir cannot fail; a
	// failure would be a build bug and leaves the catalog short, which the
	// package's tests catch.
	_ = fs.WalkDir(upstreamFS, scriptRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, scriptExt) {
			return err
		}
		b, err := upstreamFS.ReadFile(p)
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(strings.TrimPrefix(p, scriptRoot+"/"), scriptExt)
		out = append(out, Script{Name: name, Cause: path.Dir(name), Bytes: b})
		return nil
	})
	out = append(out, builtScripts()...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Lookup returns the script called name ("<cause>/<name>").
func Lookup(name string) (Script, bool) {
	cause, file, ok := strings.Cut(name, "/")
	if !ok || cause == "" || file == "" || strings.Contains(file, "/") || !fs.ValidPath(name) {
		return Script{}, false
	}
	if cause == causeHeadTooLarge {
		for _, s := range builtScripts() {
			if s.Name == name {
				return s, true
			}
		}
		return Script{}, false
	}
	b, err := upstreamFS.ReadFile(scriptRoot + "/" + name + scriptExt)
	if err != nil {
		return Script{}, false
	}
	return Script{Name: name, Cause: cause, Bytes: b}, true
}

// Sizes of the built scripts. A gateway that limits the response head to
// 64 KiB and to fewer than 300 fields (RFC 9110 §5.4 leaves both limits to
// the implementation) must reject both.
const (
	hugeValueLen = 70_000
	manyFields   = 300
)

// builtScripts returns the scripts that would be unwieldy as files.
func builtScripts() []Script {
	const ok = "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"

	var huge strings.Builder
	huge.Grow(hugeValueLen + 100)
	huge.WriteString("HTTP/1.1 200 OK\r\nX-Huge: ")
	huge.WriteString(strings.Repeat("a", hugeValueLen))
	huge.WriteString("\r\n" + ok)

	var many strings.Builder
	many.WriteString("HTTP/1.1 200 OK\r\n")
	for i := range manyFields {
		many.WriteString("X-Field-")
		many.WriteString(strconv.Itoa(i))
		many.WriteString(": v\r\n")
	}
	many.WriteString(ok)

	return []Script{
		{Name: causeHeadTooLarge + "/huge_value", Cause: causeHeadTooLarge, Bytes: []byte(huge.String())},
		{Name: causeHeadTooLarge + "/many_fields", Cause: causeHeadTooLarge, Bytes: []byte(many.String())},
	}
}
