package proxy

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

// TestForwardedElement checks candor's Forwarded element (RFC 7239):
// IPv6 quoted in brackets, a host that is not a token quoted and escaped,
// a host a quoted-string cannot hold left out.
func TestForwardedElement(t *testing.T) {
	for _, tc := range []struct {
		ip          string
		proto, host string
		want        string
	}{
		{"192.0.2.1", "http", "example.test", "for=192.0.2.1;proto=http;host=example.test"},
		{"2001:db8::1", "https", "example.test", `for="[2001:db8::1]";proto=https;host=example.test`},
		{"::ffff:192.0.2.1", "http", "a:80", `for=192.0.2.1;proto=http;host="a:80"`},
		{"", "http", "[::1]:8080", `for=unknown;proto=http;host="[::1]:8080"`},
		{"192.0.2.1", "http", "", "for=192.0.2.1;proto=http"},
		{"192.0.2.1", "http", `a"b\c d`, `for=192.0.2.1;proto=http;host="a\"b\\c d"`},
		{"192.0.2.1", "http", "a\x00b", "for=192.0.2.1;proto=http"},
	} {
		var ip netip.Addr
		if tc.ip != "" {
			ip = netip.MustParseAddr(tc.ip).Unmap()
		}
		if got := forwardedElement(ip, tc.proto, tc.host); got != tc.want {
			t.Errorf("forwardedElement(%s, %s, %q) = %s, want %s", tc.ip, tc.proto, tc.host, got, tc.want)
		}
	}
}

// TestForwardingPeers: the peer's address as candor reports it, and the
// trust decision, for the forms RemoteAddr takes.
func TestForwardingPeers(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fe80::/10")}
	for _, tc := range []struct {
		remote   string
		xff, fwd string
	}{
		{"10.1.2.3:5555", "1.1.1.1, 10.1.2.3", "for=1.1.1.1, for=10.1.2.3;proto=http;host=h"},
		{"[fe80::1%eth0]:5555", "1.1.1.1, fe80::1", `for=1.1.1.1, for="[fe80::1]";proto=http;host=h`},
		{"192.0.2.1:5555", "192.0.2.1", "for=192.0.2.1;proto=http;host=h"},
		{"@", "@", "for=unknown;proto=http;host=h"},
	} {
		r := &http.Request{RemoteAddr: tc.remote, Host: "h", Header: http.Header{
			"X-Forwarded-For": {"1.1.1.1"}, "Forwarded": {"for=1.1.1.1"},
		}}
		got := map[string]string{}
		for _, f := range forwarding(nil, r, trusted) {
			got[f.Name] = f.Value
		}
		if got["X-Forwarded-For"] != tc.xff || got["Forwarded"] != tc.fwd {
			t.Errorf("%s: X-Forwarded-For %q, Forwarded %q; want %q, %q", tc.remote, got["X-Forwarded-For"], got["Forwarded"], tc.xff, tc.fwd)
		}
	}
	// HTTP/1.0 without Host: no X-Forwarded-Host is sent, and the client's
	// is still kept out (an empty Extra value).
	fs := forwarding(nil, &http.Request{RemoteAddr: "192.0.2.1:1", Header: http.Header{"X-Forwarded-Host": {"evil"}}}, nil)
	for _, f := range fs {
		if f.Name == "X-Forwarded-Host" && f.Value != "" {
			t.Errorf("X-Forwarded-Host %q for a request without Host", f.Value)
		}
	}
}

// TestExcerpt: log excerpts of refused requests are bounded and escaped.
func TestExcerpt(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/plain/path", "/plain/path"},
		{"/caf\u00e9", "/caf\u00e9"},
		{"a\r\nb", `a\x0d\x0ab`},
		{"\xff\x00\x7f", `\xff\x00\x7f`},
		{strings.Repeat("x", 200), strings.Repeat("x", maxExcerpt) + "..."},
	} {
		if got := excerpt(tc.in); got != tc.want {
			t.Errorf("excerpt(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
