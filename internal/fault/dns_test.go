package fault

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func startDNS(t *testing.T) *DNS {
	t.Helper()
	d, err := NewDNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d
}

// resolver returns a pure-Go resolver whose every connection goes to d over
// network ("udp" or "tcp"), never to the system's servers.
func resolver(d *DNS, network string) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, network, d.Addr())
		},
	}
}

func TestDNS(t *testing.T) {
	d := startDNS(t)
	d.Add("Upstream.Candor.Test", netip.MustParseAddr("127.0.0.2"))
	d.Add("upstream.candor.test.", netip.MustParseAddr("::1"))
	d.Add("v4only.candor.test", netip.MustParseAddr("127.0.0.3"))

	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			r := resolver(d, network)
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()

			// Rooted names: no search-domain expansion.
			got, err := r.LookupNetIP(ctx, "ip", "upstream.candor.test.")
			if err != nil {
				t.Fatal(err)
			}
			slices.SortFunc(got, netip.Addr.Compare)
			want := []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("::1")}
			if !slices.Equal(got, want) {
				t.Errorf("LookupNetIP = %v, want %v", got, want)
			}

			got, err = r.LookupNetIP(ctx, "ip6", "v4only.candor.test.")
			if de, ok := errors.AsType[*net.DNSError](err); !ok || !de.IsNotFound {
				t.Errorf("AAAA of a v4-only name: %v, %v; want a not-found DNSError", got, err)
			}

			_, err = r.LookupHost(ctx, "missing.candor.test.")
			if de, ok := errors.AsType[*net.DNSError](err); !ok || !de.IsNotFound {
				t.Errorf("LookupHost(missing) error = %#v; want a DNSError with IsNotFound", err)
			}
		})
	}
	if d.Queries() == 0 {
		t.Error("Queries() = 0")
	}
}

// TestDNSRawNXDOMAIN checks the response header and question of an NXDOMAIN
// answer byte by byte through dnsmessage, over UDP.
func TestDNSRawNXDOMAIN(t *testing.T) {
	d := startDNS(t)
	name := dnsmessage.MustNewName("nope.candor.test.")
	q := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: 0xbeef, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}},
	}
	msg, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	uc, err := net.Dial("udp", d.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close() })
	if _, err := uc.Write(msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, err := uc.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	var resp dnsmessage.Message
	if err := resp.Unpack(buf[:n]); err != nil {
		t.Fatal(err)
	}
	h := resp.Header
	if h.ID != 0xbeef || !h.Response || h.RCode != dnsmessage.RCodeNameError || !h.Authoritative ||
		len(resp.Questions) != 1 || resp.Questions[0] != q.Questions[0] || len(resp.Answers) != 0 {
		t.Errorf("response = %+v", resp)
	}

	tc := dial(t, d.Addr())
	if _, err := tc.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(msg))), msg...)); err != nil {
		t.Fatal(err)
	}
	var size [2]byte
	if _, err := io.ReadFull(tc, size[:]); err != nil {
		t.Fatal(err)
	}
	if got := binary.BigEndian.Uint16(size[:]); int(got) != n {
		t.Errorf("TCP response of %d bytes, UDP %d", got, n)
	}
}
