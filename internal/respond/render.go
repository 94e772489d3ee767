package respond

import (
	"strconv"
	"unicode/utf8"

	"candor/internal/failure"
)

// Format is the representation of an error response.
type Format uint8

// The formats, in candor's order of preference (RFC 9110 §12.1: the server
// breaks ties between equally acceptable representations).
const (
	// FormatJSON is RFC 9457 problem details, application/problem+json.
	FormatJSON Format = iota
	// FormatHTML is a small self-contained HTML page for browsers.
	FormatHTML
	// FormatText is plain text, for clients that accept neither.
	FormatText
	numFormats
)

// Content-Type values of the formats.
const (
	contentTypeJSON = "application/problem+json"
	contentTypeHTML = "text/html; charset=utf-8"
	contentTypeText = "text/plain; charset=utf-8"
)

// ContentType returns the Content-Type header value for f. An unknown Format
// is treated as [FormatText].
func (f Format) ContentType() string {
	switch f {
	case FormatJSON:
		return contentTypeJSON
	case FormatHTML:
		return contentTypeHTML
	}
	return contentTypeText
}

// String returns "json", "html" or "text".
func (f Format) String() string {
	switch f {
	case FormatJSON:
		return "json"
	case FormatHTML:
		return "html"
	case FormatText:
		return "text"
	}
	return "format(" + strconv.Itoa(int(f)) + ")"
}

// URI prefixes of the problem+json "type" and "instance" members.
//
// ProblemTypePrefix + cause id is the problem type: a stable URI per cause,
// which is what RFC 9457 §3.1.1 asks consumers to key on. candor owns no web
// domain that every deployment could point at, and an https URI of one
// deployment's host would make the identifier differ between installations,
// so the type is a URN. RFC 9457 allows a type URI that is not
// dereferenceable (consumers SHOULD NOT dereference it automatically); the
// human-readable documentation of each cause is served by candor's admin
// listener and `candor causes`, keyed by the same cause id.
//
// RequestURIPrefix + request id is the problem "instance" (RFC 9457 §3.1.5):
// it identifies this occurrence of the problem, and the request id is what
// finds it in candor's logs.
const (
	ProblemTypePrefix = "urn:candor:problem:"
	RequestURIPrefix  = "urn:candor:request:"
)

// Render appends the body of candor's error response for cause k in format
// f, with request id requestID, to dst and returns the extended slice. Every
// string but requestID comes from k's row of the cause table; every string,
// requestID included, is escaped for the format. Render renders any Kind,
// including [failure.ClientCanceled]'s 499 row, which [Problem] never sends.
// An unknown f renders as [FormatText].
//
// The bodies, each ending in one newline:
//
//   - FormatJSON: one line of RFC 9457 problem details with exactly the
//     members type, title, status, detail, instance, cause and request_id, in
//     that order. type is [ProblemTypePrefix] + cause id, instance is
//     [RequestURIPrefix] + request id.
//   - FormatHTML: a page with no external resources showing the status,
//     title, detail, cause id and request id; its <title> is e.g.
//     "502 Bad Gateway".
//   - FormatText: "502 Bad Gateway\ncause: <id>\nrequest id: <id>\n<detail>\n".
//     Control characters in any value are replaced by '?', invalid UTF-8 by
//     U+FFFD.
func Render(dst []byte, k failure.Kind, f Format, requestID string) []byte {
	row := k.Row()
	switch f {
	case FormatJSON:
		return appendJSON(dst, row, requestID)
	case FormatHTML:
		return appendHTML(dst, row, requestID)
	}
	return appendText(dst, row, requestID)
}

func appendJSON(b []byte, row *failure.Row, id string) []byte {
	b = append(b, `{"type":`...)
	b = appendJSONString(b, ProblemTypePrefix, row.ID)
	b = append(b, `,"title":`...)
	b = appendJSONString(b, "", row.Title)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(row.Status), 10)
	b = append(b, `,"detail":`...)
	b = appendJSONString(b, "", row.Detail)
	b = append(b, `,"instance":`...)
	b = appendJSONString(b, RequestURIPrefix, id)
	b = append(b, `,"cause":`...)
	b = appendJSONString(b, "", row.ID)
	b = append(b, `,"request_id":`...)
	b = appendJSONString(b, "", id)
	b = append(b, "}\n"...)
	return b
}

// The HTML page. Inline CSS only, no scripts, no external resources; the
// Content-Security-Policy that [Problem] sends with it forbids anything else.
const (
	htmlHead = "<!DOCTYPE html>\n" +
		"<html lang=\"en\">\n" +
		"<head>\n" +
		"<meta charset=\"utf-8\">\n" +
		"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n" +
		"<meta name=\"robots\" content=\"noindex\">\n" +
		"<title>"
	htmlStyle = "</title>\n" +
		"<style>" +
		"body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222;background:#fff}" +
		"h1{font-size:1.6em;margin:0 0 .5em}" +
		"dl{display:grid;grid-template-columns:max-content 1fr;gap:.25em 1em;margin-top:2em;color:#555}" +
		"dd{margin:0}" +
		"code{font:14px ui-monospace,monospace;word-break:break-all}" +
		"</style>\n" +
		"</head>\n" +
		"<body>\n" +
		"<h1>"
	htmlDetail = "</h1>\n<p>"
	htmlCause  = "</p>\n<dl>\n<dt>Cause</dt><dd><code>"
	htmlReqID  = "</code></dd>\n<dt>Request id</dt><dd><code>"
	htmlTail   = "</code></dd>\n</dl>\n</body>\n</html>\n"
)

func appendHTML(b []byte, row *failure.Row, id string) []byte {
	b = append(b, htmlHead...)
	b = appendStatus(b, row)
	b = appendHTMLEscaped(b, row.Title)
	b = append(b, htmlStyle...)
	b = appendStatus(b, row)
	b = appendHTMLEscaped(b, row.Title)
	b = append(b, htmlDetail...)
	b = appendHTMLEscaped(b, row.Detail)
	b = append(b, htmlCause...)
	b = appendHTMLEscaped(b, row.ID)
	b = append(b, htmlReqID...)
	b = appendHTMLEscaped(b, id)
	b = append(b, htmlTail...)
	return b
}

func appendText(b []byte, row *failure.Row, id string) []byte {
	b = appendStatus(b, row)
	b = appendTextSafe(b, row.Title)
	b = append(b, "\ncause: "...)
	b = appendTextSafe(b, row.ID)
	b = append(b, "\nrequest id: "...)
	b = appendTextSafe(b, id)
	b = append(b, '\n')
	b = appendTextSafe(b, row.Detail)
	b = append(b, '\n')
	return b
}

// appendStatus appends e.g. "502 ", which the title follows.
func appendStatus(b []byte, row *failure.Row) []byte {
	b = strconv.AppendInt(b, int64(row.Status), 10)
	return append(b, ' ')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends the JSON string literal of prefix+s (prefix must
// need no escaping). The escaping is that of encoding/json.Marshal: '"' and
// '\\' are backslash-escaped, control characters use \b \f \n \r \t or
// \u00XX, '<', '>' and '&' become \u003c, \u003e and \u0026 (so that the body
// is inert if some client renders it as HTML), U+2028 and U+2029 are escaped,
// and invalid UTF-8 becomes \ufffd. TestAppendJSONString checks it against
// encoding/json byte for byte.
func appendJSONString(b []byte, prefix, s string) []byte {
	b = append(b, '"')
	b = append(b, prefix...)
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendHTMLEscaped appends s escaped as html.EscapeString does: the five
// characters < > & ' " become entities, which makes s safe both as element
// text and inside a quoted attribute value.
func appendHTMLEscaped(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '&':
			esc = "&amp;"
		case '\'':
			esc = "&#39;"
		case '"':
			esc = "&#34;"
		default:
			continue
		}
		b = append(b, s[start:i]...)
		b = append(b, esc...)
		start = i + 1
	}
	return append(b, s[start:]...)
}

// appendTextSafe appends s with every ASCII control character (including CR
// and LF, so that a value cannot add lines) replaced by '?' and every byte of
// invalid UTF-8 by U+FFFD, so that the body is what its charset says.
func appendTextSafe(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
		}
		b = append(b, s[start:i]...)
		if c < utf8.RuneSelf {
			b = append(b, '?')
		} else {
			b = append(b, "\uFFFD"...)
		}
		i++
		start = i
	}
	return append(b, s[start:]...)
}
