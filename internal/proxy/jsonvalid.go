package proxy

// maxJSONDepth is encoding/json's nesting limit (its scanner's
// maxNestingDepth): a document nested deeper is invalid.
const maxJSONDepth = 10000

// validJSON reports whether data is one valid JSON value (RFC 8259), with
// exactly the verdict of json.Valid: strings may hold any byte but '"',
// '\' and controls below 0x20 (UTF-8 is not checked), and nesting deeper
// than maxJSONDepth is invalid. It is the strict route's hot path: json.Valid
// calls a state function per byte, which made it the largest item of a
// strict route's profile; this loop scans runs of string bytes at once.
// FuzzValidJSON holds it to json.Valid.
func validJSON(data []byte) bool {
	// stack has a bit per open container: 1 for an object, 0 for an
	// array.
	var stack [maxJSONDepth/64 + 1]uint64
	depth := 0
	i := 0
	for {
		// A value starts at i, after optional whitespace.
		i = skipJSONSpace(data, i)
		if i >= len(data) {
			return false
		}
		var ok bool
		switch c := data[i]; c {
		case '{', '[':
			if depth == maxJSONDepth {
				return false
			}
			if c == '{' {
				stack[depth/64] |= 1 << (depth % 64)
			} else {
				stack[depth/64] &^= 1 << (depth % 64)
			}
			depth++
			i = skipJSONSpace(data, i+1)
			if i < len(data) && data[i] == c+2 { // '}' is '{'+2, ']' is '['+2
				depth--
				i++
				ok = true
				break // an empty container is a whole value
			}
			if c == '{' {
				if i, ok = jsonKey(data, i); !ok {
					return false
				}
			}
			continue // the first member's or element's value
		case '"':
			i, ok = jsonString(data, i)
		case 't':
			i, ok = jsonLiteral(data, i, "true")
		case 'f':
			i, ok = jsonLiteral(data, i, "false")
		case 'n':
			i, ok = jsonLiteral(data, i, "null")
		default:
			i, ok = jsonNumber(data, i)
		}
		if !ok {
			return false
		}
		// After a value: close containers, or take a comma and go on to
		// the next value.
		for {
			i = skipJSONSpace(data, i)
			if depth == 0 {
				return i == len(data)
			}
			if i >= len(data) {
				return false
			}
			d := depth - 1
			object := stack[d/64]>>(d%64)&1 == 1
			c := data[i]
			if c == ',' {
				if object {
					if i, ok = jsonKey(data, skipJSONSpace(data, i+1)); !ok {
						return false
					}
				} else {
					i++
				}
				break
			}
			if object && c == '}' || !object && c == ']' {
				depth--
				i++
				continue
			}
			return false
		}
	}
}

// skipJSONSpace skips JSON whitespace (RFC 8259 §2) from i.
func skipJSONSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// jsonKey checks an object member's name and colon from i, returning the
// index after the colon.
func jsonKey(data []byte, i int) (int, bool) {
	if i >= len(data) || data[i] != '"' {
		return i, false
	}
	i, ok := jsonString(data, i)
	if !ok {
		return i, false
	}
	i = skipJSONSpace(data, i)
	if i >= len(data) || data[i] != ':' {
		return i, false
	}
	return i + 1, true
}

// jsonStringStop marks the bytes that end a run of plain string bytes:
// '"', '\' and the controls below 0x20.
var jsonStringStop = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// jsonString checks the string that starts at data[i] ('"'), returning
// the index after its closing quote.
func jsonString(data []byte, i int) (int, bool) {
	i++
	for i < len(data) {
		if !jsonStringStop[data[i]] {
			i++
			continue
		}
		switch data[i] {
		case '"':
			return i + 1, true
		case '\\':
			if i+1 >= len(data) {
				return i, false
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(data) {
					return i, false
				}
				for _, h := range data[i+2 : i+6] {
					if !isHexDigit(h) {
						return i, false
					}
				}
				i += 6
			default:
				return i, false
			}
		default:
			return i, false // a control character
		}
	}
	return i, false
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// jsonLiteral checks that lit (true, false or null) is at data[i].
func jsonLiteral(data []byte, i int, lit string) (int, bool) {
	if len(data)-i < len(lit) || string(data[i:i+len(lit)]) != lit {
		return i, false
	}
	return i + len(lit), true
}

// jsonNumber checks the number at data[i] (RFC 8259 §6):
//
//	number = [ "-" ] ( "0" / 1-9 *DIGIT ) [ "." 1*DIGIT ] [ ( "e" / "E" ) [ "-" / "+" ] 1*DIGIT ]
func jsonNumber(data []byte, i int) (int, bool) {
	if data[i] == '-' {
		i++
	}
	switch {
	case i >= len(data):
		return i, false
	case data[i] == '0':
		i++
	case '1' <= data[i] && data[i] <= '9':
		i = jsonDigits(data, i+1)
	default:
		return i, false
	}
	if i < len(data) && data[i] == '.' {
		j := jsonDigits(data, i+1)
		if j == i+1 {
			return j, false
		}
		i = j
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		j := jsonDigits(data, i)
		if j == i {
			return j, false
		}
		i = j
	}
	return i, true
}

// jsonDigits skips decimal digits from i.
func jsonDigits(data []byte, i int) int {
	for i < len(data) && '0' <= data[i] && data[i] <= '9' {
		i++
	}
	return i
}
