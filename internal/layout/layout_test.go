package layout

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// root is the module root, relative to this package.
const root = "../.."

// pkg is one package directory's parsed production files.
type pkg struct {
	dir   string
	files map[string]*ast.File
}

func packages(t *testing.T) []pkg {
	t.Helper()
	byDir := map[string]*pkg{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments|parser.ImportsOnly)
		if err != nil {
			return err
		}
		dir := filepath.Dir(path)
		if byDir[dir] == nil {
			byDir[dir] = &pkg{dir: dir, files: map[string]*ast.File{}}
		}
		byDir[dir].files[path] = f
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []pkg
	for _, p := range byDir {
		out = append(out, *p)
	}
	if len(out) < 10 {
		t.Fatalf("found only %d packages under %s", len(out), root)
	}
	return out
}

// TestPackageDocs: every package says what it is for.
func TestPackageDocs(t *testing.T) {
	for _, p := range packages(t) {
		documented := false
		for _, f := range p.files {
			if f.Doc != nil && (strings.HasPrefix(f.Doc.Text(), "Package "+f.Name.Name+" ") || strings.HasPrefix(f.Doc.Text(), "Command ")) {
				documented = true
			}
		}
		if !documented {
			t.Errorf("%s: no package doc comment (\"Package NAME ...\")", p.dir)
		}
	}
}

// banned lists imports a package must never have, with the reason.
var banned = []struct {
	dirSuffix string // "" for every package
	imp       string
	why       string
	// except names the one file allowed the import, with its reason in
	// the comment of the entry; "" for none.
	except string
}{
	{"", "testing", "production code never depends on the test framework", ""},
	{"", "log", "log through an injected *slog.Logger (STYLE.md §8)", ""},
	{"", "net/http/httputil", "candor owns its request path; httputil's ReverseProxy is lenient and stringly typed", ""},
	{"internal/failure", "net/http", "the cause table does no I/O", ""},
	{"internal/failure", "log/slog", "the cause table does no logging", ""},
	// h2.go drives x/net's HTTP/2 transport, whose only report of when a
	// connection was taken and the request written is httptrace.
	{"internal/upstream", "net/http/httptrace", "phases are recorded by candor's own transport", "h2.go"},
}

// TestImports enforces the banned imports.
func TestImports(t *testing.T) {
	for _, p := range packages(t) {
		for path, f := range p.files {
			for _, is := range f.Imports {
				imp, _ := strconv.Unquote(is.Path.Value)
				for _, b := range banned {
					if imp == b.imp && strings.HasSuffix(filepath.ToSlash(p.dir), b.dirSuffix) && filepath.Base(path) != b.except {
						t.Errorf("%s imports %s: %s", path, imp, b.why)
					}
				}
			}
		}
	}
}
