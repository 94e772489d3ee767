package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads the configuration file at path and returns [Parse] of its
// contents, with [Config.File] set to the file's absolute path (which the
// errors name too). A file that cannot be read gives the *[os.PathError];
// every other problem gives an *[Errors].
func Load(path string) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, err
	}
	return Parse(abs, data)
}

// Parse decodes one configuration file, applies the defaults to the keys
// it leaves out ([Config.ApplyDefaults]), normalises it and validates it
// ([Config.Validate]). file names the file in errors and in [Config.File];
// relative paths in the configuration (tls.ca_file, a log.output file) are
// resolved against the folder of file (made absolute with the working
// directory) and stored absolute.
//
// Decoding is strict: the data must hold exactly one YAML document whose
// top level is a mapping; unknown keys, duplicate keys, merge keys (<<) and
// values of the wrong type are errors. Strings may be written as any plain
// scalar (listen: 8080 reads as "8080"), but booleans, integers, numbers,
// durations and sizes must be written as such (a number may be written as
// an integer, hash_load_factor: 2; .nan and .inf are rejected). A key
// written without a value (or with null or ~) is absent, as in
// [yaml.Unmarshal]: "admin:" alone leaves the admin listener off, so write
// "strict: {}" to enable strict mode with its defaults. Anchors and
// aliases are followed, up to a tenfold expansion of the document.
//
// On failure, Parse returns a nil *Config and an *[Errors] holding every
// problem found, sorted by line.
func Parse(file string, data []byte) (*Config, error) {
	d := decoder{file: file, lines: map[string]int{}, given: map[string]bool{}, bad: map[string]bool{}}
	root := d.document(data)
	if root == nil {
		return nil, d.errs.result()
	}
	if root.Kind != yaml.MappingNode {
		d.fail(root.Line, "", "expected a mapping of settings (listen, routes, upstreams, ...), got %s", describe(root))
		return nil, d.errs.result()
	}
	d.budget = aliasExpansion*count(root) + aliasAllowance
	var c Config
	d.value(root, reflect.ValueOf(&c).Elem(), "")
	if d.budget < 0 {
		return nil, d.errs.result() // c is partial: validating it is noise
	}
	c.File = file
	d.locate(&c)
	c.normalize()
	c.applyDefaults(func(path string) bool { return d.given[path] })

	v := validator{file: file, lines: d.lines, broken: d.failed, given: func(path string) bool { return d.given[path] }}
	v.config(&c)
	if err := append(d.errs, v.errs...).result(); err != nil {
		return nil, err
	}
	return &c, nil
}

// decoder decodes a YAML node tree into a [Config], strictly, recording
// where each field is written.
type decoder struct {
	file string
	// lines maps a field path to the line of its key (or of its list item).
	lines map[string]int
	// given holds the field paths written with a non-null value.
	given map[string]bool
	// errs are the decoding problems.
	errs Errors
	// bad holds the fields with a decoding problem.
	bad map[string]bool
	// budget is the number of nodes left to decode; aliases can make a
	// small document expand into a huge one.
	budget int
	// alias is the line of the outermost alias being decoded, or 0.
	alias int
}

// Limits on alias expansion: a document of n nodes may decode into
// aliasExpansion*n + aliasAllowance nodes.
const (
	aliasExpansion = 10
	aliasAllowance = 10000
)

// count returns the number of nodes in the tree at n, not following
// aliases.
func count(n *yaml.Node) int {
	total := 1
	for _, c := range n.Content {
		total += count(c)
	}
	return total
}

// fail records a decoding problem.
func (d *decoder) fail(line int, field, format string, args ...any) {
	d.errs.add(d.file, line, field, fmt.Sprintf(format, args...))
	if field != "" {
		d.bad[field] = true
	}
}

// failed reports whether field or a parent of it has a decoding problem;
// validating such a field would only repeat the problem. Problems of the
// top level (Field "") do not count.
func (d *decoder) failed(field string) bool {
	if d.bad[field] {
		return true
	}
	for i := range len(field) {
		if (field[i] == '.' || field[i] == '[') && d.bad[field[:i]] {
			return true
		}
	}
	return false
}

// document parses data as exactly one YAML document and returns its root
// node, or nil after recording why there is none.
func (d *decoder) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.fail(1, "", "no configuration: the file is empty")
		} else {
			d.syntax(err, data)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.syntax(err, data)
		return nil
	default:
		d.fail(max(next.Line, 1), "", "multiple YAML documents: a configuration file holds exactly one")
		return nil
	}
	if len(doc.Content) == 0 || doc.Content[0].ShortTag() == "!!null" {
		d.fail(max(doc.Line, 1), "", "no configuration: the document is empty")
		return nil
	}
	return doc.Content[0]
}

// syntax records a YAML syntax error, finding its line in the message
// ("yaml: line 3: ...") or, for an unknown anchor, in data.
func (d *decoder) syntax(err error, data []byte) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 1
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, reason, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil && n > 0 {
				line, msg = n, reason
				if parserProblem(reason) {
					line++
				}
			}
		}
	} else if name, ok := strings.CutPrefix(msg, "unknown anchor '"); ok {
		name = strings.TrimSuffix(name, "' referenced")
		if i := bytes.Index(data, []byte("*"+name)); i >= 0 {
			line = 1 + bytes.Count(data[:i], []byte("\n"))
			if secretAlias(data[:i]) {
				// A token that begins with "*" reads as an alias; its
				// name is the secret.
				msg = "unknown anchor referenced (quote a token that begins with *)"
			}
		}
	}
	d.fail(line, "", "invalid YAML: %s", msg)
}

// tokenKey matches the end of the text before the value of a token key.
var tokenKey = regexp.MustCompile(`(?:^|[\s{,])["']?token["']?\s*:$`)

// secretAlias reports whether an alias that follows before is the value
// of a token key (admin.token), on the key's line or the next.
func secretAlias(before []byte) bool {
	before = bytes.TrimRight(before, " \t\r\n")
	if i := bytes.LastIndexByte(before, '\n'); i >= 0 {
		before = before[i+1:]
	}
	return tokenKey.Match(before)
}

// parserProblem reports whether msg is a problem found by the YAML parser
// (as opposed to its scanner). yaml.v3 numbers the lines of parser
// problems from 0 and those of scanner problems from 1.
func parserProblem(msg string) bool {
	switch msg {
	case "did not find expected ',' or ']'",
		"did not find expected ',' or '}'",
		"did not find expected '-' indicator",
		"did not find expected <document start>",
		"did not find expected <stream-start>",
		"did not find expected key",
		"did not find expected node content",
		"found duplicate %YAML directive",
		"found duplicate %TAG directive",
		"found incompatible YAML document",
		"found undefined tag handle":
		return true
	}
	return false
}

// value decodes n into v, the field at path.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if d.budget--; d.budget == -1 {
		line := n.Line
		if d.alias != 0 {
			line = d.alias
		}
		d.fail(line, "", "aliases expand the document more than %d-fold", aliasExpansion)
	}
	if d.budget < 0 {
		return
	}
	if n.Kind == yaml.AliasNode && d.alias == 0 {
		d.alias = n.Line
		defer func() { d.alias = 0 }()
	}
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	line := n.Line
	if l, ok := d.lines[path]; ok {
		line = l
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // absent
	}
	d.given[path] = true
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		v = v.Elem()
	}
	if u, ok := v.Addr().Interface().(yaml.Unmarshaler); ok {
		if err := u.UnmarshalYAML(n); err != nil {
			d.fail(line, path, "%s", err.Error())
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.structure(n, v, path, line)
	case reflect.Map:
		d.mapping(n, v, path, line)
	case reflect.Slice:
		d.list(n, v, path, line)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!binary" {
			d.fail(line, path, "expected a string, got %s", describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.fail(line, path, "expected true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		var i int64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			d.fail(line, path, "expected an integer, got %s", describe(n))
			return
		}
		if n.Decode(&i) != nil || v.OverflowInt(i) {
			d.fail(line, path, "integer %s out of range", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		var f float64
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!float" && n.ShortTag() != "!!int") {
			d.fail(line, path, "expected a number, got %s", describe(n))
			return
		}
		if n.Decode(&f) != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			d.fail(line, path, "expected a finite number, got %s", n.Value)
			return
		}
		v.SetFloat(f)
	default:
		d.fail(line, path, "unsupported field type %s", v.Type())
	}
}

// keys calls f for each key and value of the mapping n, reporting
// non-string keys, merge keys and duplicate keys.
func (d *decoder) keys(n *yaml.Node, path string, f func(key string, k, v *yaml.Node)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		for j := 0; k.Kind == yaml.AliasNode && k.Alias != nil && j < 100; j++ {
			k = k.Alias
		}
		switch {
		case k.Kind != yaml.ScalarNode:
			d.fail(k.Line, path, "keys must be strings, got %s", describe(k))
			continue
		case k.ShortTag() == "!!merge":
			d.fail(k.Line, path, "merge keys (<<) are not supported")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.fail(k.Line, join(path, k.Value), "duplicate key (first at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		f(k.Value, k, v)
	}
}

// structure decodes the mapping n into the struct v.
func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string, line int) {
	if n.Kind != yaml.MappingNode {
		d.fail(line, path, "expected a mapping, got %s", describe(n))
		return
	}
	t := v.Type()
	var names []string
	fields := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		names = append(names, name)
		fields[name] = i
	}
	d.keys(n, path, func(key string, k, val *yaml.Node) {
		p := join(path, key)
		i, ok := fields[key]
		if !ok {
			d.fail(k.Line, p, "unknown key (valid keys: %s)", strings.Join(names, ", "))
			return
		}
		d.lines[p] = k.Line
		d.value(val, v.Field(i), p)
	})
}

// mapping decodes the mapping n into the map v, whose keys are strings.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string, line int) {
	if n.Kind != yaml.MappingNode {
		d.fail(line, path, "expected a mapping, got %s", describe(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	d.keys(n, path, func(key string, k, val *yaml.Node) {
		p := join(path, key)
		d.lines[p] = k.Line
		elem := reflect.New(v.Type().Elem()).Elem()
		d.value(val, elem, p)
		if elem.Kind() == reflect.Pointer && elem.IsNil() {
			// "name:" without a value is an entry with every field absent.
			elem.Set(reflect.New(elem.Type().Elem()))
		}
		v.SetMapIndex(reflect.ValueOf(key).Convert(v.Type().Key()), elem)
	})
}

// list decodes the sequence n into the slice v.
func (d *decoder) list(n *yaml.Node, v reflect.Value, path string, line int) {
	if n.Kind != yaml.SequenceNode {
		d.fail(line, path, "expected a list, got %s", describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		p := index(path, i)
		d.lines[p] = item.Line
		d.value(item, s.Index(i), p)
	}
	v.Set(s)
}

// locate fills the Line and Name fields of c from the recorded lines.
func (d *decoder) locate(c *Config) {
	for i := range c.Routes {
		c.Routes[i].Line = d.lines[index("routes", i)]
	}
	for name, u := range c.Upstreams {
		if u == nil {
			continue
		}
		p := join("upstreams", name)
		u.Name = name
		u.Line = d.lines[p]
		for j := range u.Targets {
			u.Targets[j].Line = d.lines[index(p+".targets", j)]
		}
	}
}

// join returns the path of key inside the mapping at path. A key that is
// not a plain name (see [validName]) is quoted.
func join(path, key string) string {
	if !validName(key) {
		key = strconv.Quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// index returns the path of item i of the list at path.
func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}
