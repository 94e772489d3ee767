package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Interface guards.
var (
	_ yaml.Unmarshaler = (*Duration)(nil)
	_ yaml.Marshaler   = Duration(0)
	_ yaml.Unmarshaler = (*Size)(nil)
	_ yaml.Marshaler   = Size(0)
)

// String returns d in [time.Duration.String] form ("2s", "1m30s"), which
// [Duration.UnmarshalYAML] reads back.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML writes d as its [Duration.String] form.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a duration written for [time.ParseDuration]: a
// number and a unit ("5s", "150ms", "1m30s"). The duration must be greater
// than zero; a bare number such as 5 is rejected because its unit is
// ambiguous.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a duration such as 5s, got %s", describe(n))
	}
	switch n.ShortTag() {
	case "!!null":
		return nil
	case "!!str", "!!int", "!!float":
	default:
		return fmt.Errorf("expected a duration such as 5s, got %s", describe(n))
	}
	v, err := parseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// parseDuration parses a positive duration with a unit.
func parseDuration(s string) (Duration, error) {
	if s == "" {
		return 0, errors.New("empty duration: write a number and a unit, e.g. 5s")
	}
	if isNumber(s) {
		if f, _ := strconv.ParseFloat(s, 64); f <= 0 {
			return 0, fmt.Errorf("must be greater than 0, got %q", s)
		}
		return 0, errors.New("missing unit, e.g. 5s")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: write a number and a unit (ns, us, ms, s, m, h), e.g. 5s or 1m30s", s)
	}
	if v <= 0 {
		return 0, fmt.Errorf("must be greater than 0, got %q", s)
	}
	return Duration(v), nil
}

// isNumber reports whether s is a plain decimal number such as 5, -1 or
// 0.5, without a unit.
func isNumber(s string) bool {
	s = strings.TrimLeft(s, "+-")
	digits := false
	for i, c := range s {
		switch {
		case c >= '0' && c <= '9':
			digits = true
		case c == '.' && !strings.Contains(s[i+1:], "."):
		default:
			return false
		}
	}
	return digits
}

// sizeUnit is a unit a [Size] may be written in.
type sizeUnit struct {
	name string
	mult int64
}

// sizeUnits returns the units, largest first within each family so that
// [Size.String] picks the largest exact unit.
func sizeUnits() [7]sizeUnit {
	return [...]sizeUnit{
		{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
		{"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
		{"B", 1},
	}
}

// String returns s in the largest unit that represents it exactly,
// preferring the 1024-based units: "1MiB", "64KiB", "3MB", "1000" (bytes).
// [Size.UnmarshalYAML] reads it back.
func (s Size) String() string {
	n := int64(s)
	if n > 0 {
		units := sizeUnits()
		for _, u := range units[:len(units)-1] {
			if n%u.mult == 0 {
				return strconv.FormatInt(n/u.mult, 10) + u.name
			}
		}
	}
	return strconv.FormatInt(n, 10)
}

// MarshalYAML writes s as its [Size.String] form.
func (s Size) MarshalYAML() (any, error) { return s.String(), nil }

// UnmarshalYAML reads a byte count: a non-negative integer ("512") or an
// integer immediately followed by a unit: B, KiB, MiB, GiB (powers of
// 1024) or KB, MB, GB (powers of 1000), as in "64KiB". One space between
// number and unit is accepted ("1 MiB"). Units are case-sensitive;
// fractions, signs and values beyond int64 are rejected.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a size such as 64KiB, got %s", describe(n))
	}
	switch n.ShortTag() {
	case "!!null":
		return nil
	case "!!str", "!!int", "!!float":
	default:
		return fmt.Errorf("expected a size such as 64KiB, got %s", describe(n))
	}
	v, err := parseSize(n.Value)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// parseSize parses a byte count as documented on [Size.UnmarshalYAML].
func parseSize(s string) (Size, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	num, unit := s[:i], s[i:]
	switch {
	case s == "":
		return 0, errors.New("empty size: write bytes or a number and a unit, e.g. 64KiB")
	case strings.HasPrefix(s, "-"):
		return 0, fmt.Errorf("must not be negative, got %q", s)
	case num == "":
		return 0, fmt.Errorf("invalid size %q: write bytes or a number and a unit, e.g. 64KiB", s)
	case strings.HasPrefix(unit, "."), strings.HasPrefix(unit, "e"), strings.HasPrefix(unit, "E"):
		return 0, fmt.Errorf("must be a whole number of bytes, got %q", s)
	}
	if rest, ok := strings.CutPrefix(unit, " "); ok {
		if rest == "" {
			return 0, fmt.Errorf("invalid size %q: trailing space", s)
		}
		unit = rest
	}
	mult := int64(0)
	if unit == "" {
		mult = 1
	}
	for _, u := range sizeUnits() {
		if unit == u.name {
			mult = u.mult
		}
	}
	if mult == 0 {
		return 0, fmt.Errorf("unknown unit %q in size %q: use B, KiB, MiB, GiB (1024-based) or KB, MB, GB (1000-based)", unit, s)
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return Size(v * mult), nil
}

// describe names the YAML type of n for error messages: "a list", "a
// mapping", "a string", ...
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.DocumentNode:
		return "a document"
	case yaml.AliasNode:
		return "an alias"
	}
	switch t := n.ShortTag(); t {
	case "!!str":
		return "a string"
	case "!!int":
		return "an integer"
	case "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	case "!!null":
		return "nothing (null)"
	case "!!timestamp":
		return "a timestamp"
	case "!!binary":
		return "binary data"
	default:
		return "a value tagged " + strconv.Quote(t)
	}
}
