package router

import "testing"

func TestMatch(t *testing.T) {
	tab := New([]Rule{
		{Host: "api.example.test", PathPrefix: "/v1/"},
		{Host: "api.example.test"},
		{PathPrefix: "/static/"},
		{Host: "::1"},
		{},
	})
	cases := []struct {
		name, host, path string
		want             int
	}{
		{"host and prefix", "api.example.test", "/v1/users", 0},
		{"host with port", "api.example.test:8080", "/v1/users", 0},
		{"host case-insensitive", "API.Example.TEST", "/v1/x", 0},
		{"trailing dot", "api.example.test.", "/v1/x", 0},
		{"host, other prefix: next rule", "api.example.test", "/v2/x", 1},
		{"prefix is not a substring match", "other.test", "/x/static/", 4},
		{"prefix only", "other.test", "/static/a.css", 2},
		{"ipv6 literal with port", "[::1]:8080", "/", 3},
		{"catch-all", "other.test", "/", 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := tab.Match(c.host, c.path); got != c.want {
				t.Fatalf("Match(%q, %q) = %d, want %d", c.host, c.path, got, c.want)
			}
		})
	}
	if got := New([]Rule{{Host: "a.test"}}).Match("b.test", "/"); got != -1 {
		t.Fatalf("no match = %d, want -1", got)
	}
}

// FuzzMatch: Match never panics and returns -1 or a valid index whose rule
// matches.
func FuzzMatch(f *testing.F) {
	f.Add("api.example.test:80", "/v1/x")
	f.Add("[::1", "")
	f.Add("a:b:c", "/")
	tab := New([]Rule{{Host: "api.example.test", PathPrefix: "/v1/"}, {PathPrefix: "/s"}, {Host: "::1"}})
	f.Fuzz(func(t *testing.T, host, path string) {
		i := tab.Match(host, path)
		if i < -1 || i >= 3 {
			t.Fatalf("index %d", i)
		}
	})
}
