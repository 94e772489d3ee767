package respond

import (
	"net/http"
	"strings"
)

// Bounds on the work Negotiate does for one request. Real clients send a
// few hundred bytes and at most a couple of dozen ranges (a browser's
// navigation Accept has eight); anything past the limits is ignored, so a
// hostile header costs at most a fixed amount of scanning.
const (
	maxAcceptBytes  = 2048 // bytes of Accept field values examined, over all lines
	maxAcceptRanges = 32   // list elements (media ranges) examined
)

// Specificity of the Accept media range that gave a candidate its weight.
// RFC 9110 §12.5.1: "Media ranges can be overridden by more specific media
// ranges or specific media types. If more than one media range applies to a
// given type, the most specific reference has precedence."
const (
	specNone  int8 = iota // no range matched the candidate
	specAll               // */*
	specType              // application/* or text/*
	specAlias             // application/json, standing in for problem+json
	specExact             // the candidate's own type
)

// weight is a qvalue in thousandths: 0 (not acceptable) to 1000.
type weight = int16

type candidate struct {
	spec int8
	q    weight
}

// negotiation collects, per format, the weight of the most specific Accept
// range that matched it.
type negotiation struct {
	elems  int // list elements examined
	ranges int // valid media ranges seen
	c      [numFormats]candidate
}

// Negotiate picks the error response format for a request with header h,
// following the Accept field (RFC 9110 §12.5.1) over all its lines.
//
// The candidates, in candor's order of preference, are problem+json, HTML
// and plain text. Each gets the weight (q, default 1) of the most specific
// media range that matches it: the type itself, then application/* or
// text/*, then */*. application/json counts as accepting problem+json, less
// specifically than application/problem+json itself. The candidate with the
// highest weight wins, ties going to the more preferred one; q=0 means "not
// acceptable". Thus:
//
//   - no Accept field, an empty one, or one with no valid range: FormatJSON;
//   - */* (curl, fetch, most HTTP libraries), application/json: FormatJSON;
//   - a browser's "text/html,...,*/*;q=0.8": FormatHTML;
//   - text/plain, or only types candor cannot produce (image/png), or
//     everything at q=0: FormatText. An error response is sent regardless:
//     RFC 9110 §12.5.1 lets a server disregard an Accept it cannot satisfy
//     rather than answer 406, and plain text is the least presumptuous.
//
// Media types and the parameter name q are compared case-insensitively;
// parameters other than q are ignored (their syntax is still checked).
// A malformed range (no '/', invalid token, a q that is not a valid
// qvalue, a malformed parameter) is ignored on its own. Negotiate examines
// at most the first 2048 bytes and 32 ranges of the field and does not
// allocate.
//
// h must have canonical keys, as the header of a request served by net/http
// does.
func Negotiate(h http.Header) Format {
	var n negotiation
	budget := maxAcceptBytes
	for _, v := range h["Accept"] {
		if !n.scan(v, &budget) {
			break
		}
	}
	return n.result()
}

// scan processes the list elements of one Accept field line, within the
// byte budget shared by all lines. It reports false once a limit is reached;
// an element cut by the byte limit is dropped whole, never half-read (a cut
// "q=0.8" must not become "q=0").
func (n *negotiation) scan(v string, budget *int) bool {
	truncated := len(v) > *budget
	if truncated {
		v = v[:*budget]
	}
	*budget -= len(v)
	for i := 0; i < len(v); {
		// Skip empty list elements and whitespace (RFC 9110 §5.6.1).
		if c := v[i]; c == ',' || c == ' ' || c == '\t' {
			i++
			continue
		}
		end := elementEnd(v, i)
		if (end == len(v) && truncated) || n.elems >= maxAcceptRanges {
			return false
		}
		n.elems++
		n.add(v[i:end])
		i = end
	}
	return !truncated
}

// elementEnd returns the index of the comma that ends the list element
// starting at i, or len(v): commas inside quoted strings do not count.
func elementEnd(v string, i int) int {
	quoted := false
	for ; i < len(v); i++ {
		switch c := v[i]; {
		case quoted && c == '\\':
			i++ // quoted-pair: skip the escaped octet
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			return i
		}
	}
	return len(v)
}

// add applies one media range, `type "/" subtype *( OWS ";" OWS parameter )`.
func (n *negotiation) add(e string) {
	mr, params, _ := strings.Cut(e, ";")
	typ, sub, ok := strings.Cut(trimOWS(mr), "/")
	if !ok || !isToken(typ) || !isToken(sub) {
		return
	}
	q, ok := parseParams(params)
	if !ok {
		return
	}
	if typ == "*" && sub != "*" {
		return // "*/html" is not a media range
	}
	n.ranges++
	switch {
	case typ == "*":
		n.match(FormatJSON, specAll, q)
		n.match(FormatHTML, specAll, q)
		n.match(FormatText, specAll, q)
	case strings.EqualFold(typ, "application"):
		switch {
		case sub == "*":
			n.match(FormatJSON, specType, q)
		case strings.EqualFold(sub, "problem+json"):
			n.match(FormatJSON, specExact, q)
		case strings.EqualFold(sub, "json"):
			n.match(FormatJSON, specAlias, q)
		}
	case strings.EqualFold(typ, "text"):
		switch {
		case sub == "*":
			n.match(FormatHTML, specType, q)
			n.match(FormatText, specType, q)
		case strings.EqualFold(sub, "html"):
			n.match(FormatHTML, specExact, q)
		case strings.EqualFold(sub, "plain"):
			n.match(FormatText, specExact, q)
		}
	}
}

// match records that a range of specificity spec and weight q matched f. A
// more specific range overrides a less specific one; of equally specific
// ones (text/html;level=1 and text/html, since parameters are ignored) the
// highest weight counts.
func (n *negotiation) match(f Format, spec int8, q weight) {
	c := &n.c[f]
	if spec > c.spec || (spec == c.spec && q > c.q) {
		c.spec, c.q = spec, q
	}
}

func (n *negotiation) result() Format {
	if n.ranges == 0 {
		return FormatJSON
	}
	best, bestQ := FormatText, weight(0)
	for f := FormatJSON; f < numFormats; f++ {
		if c := n.c[f]; c.spec != specNone && c.q > bestQ {
			best, bestQ = f, c.q
		}
	}
	return best
}

// parseParams checks the parameters of a media range and returns its
// weight: the value of the first parameter named q (RFC 7231 treated what
// follows it as accept-ext; it is ignored here too), or 1000 without one.
func parseParams(s string) (weight, bool) {
	q, haveQ := weight(1000), false
	for s != "" {
		var p string
		p, s = cutParam(s)
		p = trimOWS(p)
		if p == "" {
			continue // tolerate "text/html;" and ";;"
		}
		name, value, ok := strings.Cut(p, "=")
		if !ok || !isToken(name) || !isParamValue(value) {
			return 0, false
		}
		if !haveQ && (name == "q" || name == "Q") {
			if q, ok = parseQ(value); !ok {
				return 0, false
			}
			haveQ = true
		}
	}
	return q, true
}

// cutParam splits s at the first ';' outside a quoted string.
func cutParam(s string) (param, rest string) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case c == ';' && !quoted:
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

// parseQ parses a qvalue, RFC 9110 §12.4.2:
//
//	qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
func parseQ(s string) (weight, bool) {
	if s == "" || len(s) > 5 || (len(s) > 1 && s[1] != '.') {
		return 0, false
	}
	switch s[0] {
	case '0':
		q, mult := weight(0), weight(100)
		for i := 2; i < len(s); i++ {
			d := s[i]
			if d < '0' || d > '9' {
				return 0, false
			}
			q += weight(d-'0') * mult
			mult /= 10
		}
		return q, true
	case '1':
		for i := 2; i < len(s); i++ {
			if s[i] != '0' {
				return 0, false
			}
		}
		return 1000, true
	}
	return 0, false
}

func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// isParamValue reports whether s is a token or a quoted-string
// (RFC 9110 §5.6.4, §5.6.6).
func isParamValue(s string) bool {
	if len(s) < 2 || s[0] != '"' {
		return isToken(s)
	}
	if s[len(s)-1] != '"' {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		switch c := s[i]; {
		case c == '\\':
			i++
			if i == len(s)-1 {
				return false // the closing quote was escaped
			}
			if d := s[i]; d != '\t' && (d < 0x20 || d == 0x7f) {
				return false
			}
		case c == '"':
			return false
		case c != '\t' && (c < 0x20 || c == 0x7f):
			return false
		}
	}
	return true
}

// isToken reports whether s is a non-empty token (RFC 9110 §5.6.2).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return false
		}
	}
	return true
}

// tchar as two 64-bit masks over ASCII: bit c of tcharLo (c < 64) or bit
// c-64 of tcharHi is set when c is a tchar (RFC 9110 §5.6.2): ALPHA, DIGIT
// and !#$%&'*+-.^_`|~. TestTchar checks them against the grammar.
const (
	tcharLo uint64 = 0x03ff6cfa00000000
	tcharHi uint64 = 0x57ffffffc7fffffe
)

func isTchar(c byte) bool {
	if c < 64 {
		return tcharLo&(1<<c) != 0
	}
	return c < 128 && tcharHi&(1<<(c-64)) != 0
}
