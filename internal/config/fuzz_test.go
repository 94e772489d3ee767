package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

// FuzzParse checks that Parse never panics, that what it accepts
// re-validates and survives a Marshal round trip, and that every line of
// what it rejects starts with file:line:.
func FuzzParse(f *testing.F) {
	seeds := append(validFiles(f), invalidFiles(f)...)
	for _, file := range seeds {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	// Relative ca_file names in the seeds resolve against testdata/valid.
	file := filepath.Join("testdata", "valid", "fuzz.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(file, data)
		if err != nil {
			if c != nil {
				t.Errorf("Parse returned a config with its error")
			}
			if _, ok := errors.AsType[*Errors](err); !ok {
				t.Fatalf("error is %T, want *Errors: %v", err, err)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !errLine.MatchString(line) {
					t.Errorf("error line %q lacks file:line:", line)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted what Validate rejects: %v", err)
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		again, err := Parse(file, out)
		if err != nil {
			t.Fatalf("Parse(Marshal(c)): %v\n%s", err, out)
		}
		if diff := cmp.Diff(c, again, ignoreLines()); diff != "" {
			t.Fatalf("round trip mismatch (-parsed +reparsed):\n%s\n%s", diff, out)
		}
	})
}
