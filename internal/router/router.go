// Package router maps a request's host and path to a route. A Table is
// built once per configuration generation and never changes, so Match takes
// no lock.
package router

import "strings"

// Rule matches requests by host and path prefix; empty fields match
// everything.
type Rule struct {
	// Host is compared with the request's host, port removed,
	// case-insensitively.
	Host string
	// PathPrefix is compared with the start of the request's path.
	PathPrefix string
}

// Table is an ordered list of rules: the first match wins.
type Table struct {
	rules []Rule
}

// New returns a Table of rules in order.
func New(rules []Rule) *Table {
	return &Table{rules: append([]Rule(nil), rules...)}
}

// Match returns the index of the first rule matching host (which may carry
// a port) and path, or -1.
func (t *Table) Match(host, path string) int {
	host = stripPort(host)
	for i := range t.rules {
		r := &t.rules[i]
		if r.Host != "" && !strings.EqualFold(r.Host, host) {
			continue
		}
		if !strings.HasPrefix(path, r.PathPrefix) {
			continue
		}
		return i
	}
	return -1
}

// stripPort removes a port from a Host value: "a.test:8080" -> "a.test",
// "[::1]:80" -> "::1". A trailing dot of a fully qualified name is dropped.
func stripPort(host string) string {
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i > 0 {
			return host[1:i]
		}
		return host
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.Count(host, ":") == 1 {
		host = host[:i]
	}
	return strings.TrimSuffix(host, ".")
}
