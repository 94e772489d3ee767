package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

// node parses one YAML value.
func node(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatalf("yaml %q: %v", src, err)
	}
	if len(doc.Content) == 0 {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}
	}
	return doc.Content[0]
}

func TestDurationUnmarshalYAML(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		want    Duration
		wantErr string // substring; "" for success
	}{
		{name: "seconds", src: "5s", want: Duration(5 * time.Second)},
		{name: "milliseconds", src: "150ms", want: Duration(150 * time.Millisecond)},
		{name: "compound", src: "1m30s", want: Duration(90 * time.Second)},
		{name: "quoted", src: `"2h"`, want: Duration(2 * time.Hour)},
		{name: "fraction", src: "1.5s", want: Duration(1500 * time.Millisecond)},
		{name: "bare integer", src: "5", wantErr: "missing unit, e.g. 5s"},
		{name: "bare float", src: "2.5", wantErr: "missing unit, e.g. 5s"},
		{name: "quoted bare number", src: `"5"`, wantErr: "missing unit, e.g. 5s"},
		{name: "zero", src: "0s", wantErr: `must be greater than 0, got "0s"`},
		{name: "bare zero", src: "0", wantErr: `must be greater than 0, got "0"`},
		{name: "negative", src: "-1s", wantErr: `must be greater than 0, got "-1s"`},
		{name: "unknown unit", src: "5 seconds", wantErr: `invalid duration "5 seconds"`},
		{name: "days", src: "1d", wantErr: `invalid duration "1d"`},
		{name: "empty", src: `""`, wantErr: "empty duration"},
		{name: "overflow", src: "9999999999h", wantErr: "invalid duration"},
		{name: "list", src: "[1s]", wantErr: "expected a duration such as 5s, got a list"},
		{name: "bool", src: "true", wantErr: "expected a duration such as 5s, got a boolean"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Duration
			err := got.UnmarshalYAML(node(t, tt.src))
			checkErr(t, err, tt.wantErr)
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSizeUnmarshalYAML(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		want    Size
		wantErr string // substring; "" for success
	}{
		{name: "bytes", src: "512", want: 512},
		{name: "zero", src: "0", want: 0},
		{name: "quoted bytes", src: `"512"`, want: 512},
		{name: "B", src: "512B", want: 512},
		{name: "KiB", src: "64KiB", want: 64 << 10},
		{name: "MiB", src: "1MiB", want: 1 << 20},
		{name: "GiB", src: "2GiB", want: 2 << 30},
		{name: "KB", src: "3KB", want: 3000},
		{name: "MB", src: "3MB", want: 3000000},
		{name: "GB", src: "3GB", want: 3000000000},
		{name: "one space", src: "1 MiB", want: 1 << 20},
		{name: "largest", src: "9223372036854775807", want: 1<<63 - 1},
		{name: "largest GiB", src: "8589934591GiB", want: 8589934591 << 30},
		{name: "two spaces", src: `"1  MiB"`, wantErr: `unknown unit " MiB"`},
		{name: "trailing space", src: `"1 "`, wantErr: "trailing space"},
		{name: "negative", src: "-1", wantErr: `must not be negative, got "-1"`},
		{name: "negative with unit", src: "-1KiB", wantErr: "must not be negative"},
		{name: "fraction", src: "1.5MiB", wantErr: `must be a whole number of bytes, got "1.5MiB"`},
		{name: "float", src: "1.5", wantErr: "must be a whole number of bytes"},
		{name: "exponent", src: "1e6", wantErr: "must be a whole number of bytes"},
		{name: "lower-case unit", src: "1mib", wantErr: `unknown unit "mib"`},
		{name: "unknown unit", src: "1TiB", wantErr: `unknown unit "TiB"`},
		{name: "unit only", src: "MiB", wantErr: `invalid size "MiB"`},
		{name: "hex", src: "0x10", wantErr: `unknown unit "x10"`},
		{name: "plus", src: "+5", wantErr: `invalid size "+5"`},
		{name: "overflow bytes", src: "9223372036854775808", wantErr: "is too large"},
		{name: "overflow unit", src: "8589934592GiB", wantErr: "is too large"},
		{name: "empty", src: `""`, wantErr: "empty size"},
		{name: "map", src: "{a: 1}", wantErr: "expected a size such as 64KiB, got a mapping"},
		{name: "bool", src: "true", wantErr: "expected a size such as 64KiB, got a boolean"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Size
			err := got.UnmarshalYAML(node(t, tt.src))
			checkErr(t, err, tt.wantErr)
			if got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

// checkErr checks err against a wanted error substring ("" for none).
func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q does not contain %q", err, want)
	}
}

func TestSizeString(t *testing.T) {
	tests := []struct {
		name string
		size Size
		want string
	}{
		{name: "zero", size: 0, want: "0"},
		{name: "bytes", size: 1000 + 1, want: "1001"},
		{name: "KiB", size: 64 << 10, want: "64KiB"},
		{name: "MiB", size: 1 << 20, want: "1MiB"},
		{name: "GiB", size: 3 << 30, want: "3GiB"},
		{name: "binary preferred", size: 1024000, want: "1000KiB"},
		{name: "KB", size: 1000, want: "1KB"},
		{name: "MB", size: 5000000, want: "5MB"},
		{name: "GB", size: 7000000000, want: "7GB"},
		{name: "negative", size: -5, want: "-5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.size.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			if tt.size < 0 {
				return
			}
			back, err := parseSize(tt.want)
			if err != nil || back != tt.size {
				t.Errorf("parseSize(%q) = %d, %v; want %d", tt.want, back, err, tt.size)
			}
		})
	}
}

func TestDurationString(t *testing.T) {
	tests := []struct {
		name string
		d    Duration
		want string
	}{
		{name: "seconds", d: Duration(2 * time.Second), want: "2s"},
		{name: "minutes", d: Duration(90 * time.Second), want: "1m30s"},
		{name: "milliseconds", d: Duration(150 * time.Millisecond), want: "150ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.d.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			if got := tt.d.Std(); got != time.Duration(tt.d) {
				t.Errorf("Std() = %v", got)
			}
			back, err := parseDuration(tt.want)
			if err != nil || back != tt.d {
				t.Errorf("parseDuration(%q) = %v, %v; want %v", tt.want, back, err, tt.d)
			}
		})
	}
}

func TestUnitsMarshalYAML(t *testing.T) {
	type pair struct {
		D Duration `yaml:"d"`
		S Size     `yaml:"s"`
	}
	tests := []struct {
		name string
		in   pair
		want string
	}{
		{name: "units", in: pair{D: Duration(1500 * time.Millisecond), S: 1 << 20}, want: "d: 1.5s\ns: 1MiB\n"},
		{name: "bytes are quoted", in: pair{D: Duration(time.Hour), S: 1001}, want: "d: 1h0m0s\ns: \"1001\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := yaml.Marshal(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, string(data)); diff != "" {
				t.Errorf("Marshal mismatch (-want +got):\n%s", diff)
			}
			var back pair
			if err := yaml.Unmarshal(data, &back); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.in, back); diff != "" {
				t.Errorf("round trip mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
