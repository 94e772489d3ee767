package fault

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/net/dns/dnsmessage"
)

// DNS is an authoritative DNS server on 127.0.0.1, over UDP and TCP on the
// same port. It answers A and AAAA queries for the names added with
// [DNS.Add], NOERROR with no answer for their other types (RFC 2308 §2.2,
// NODATA), and NXDOMAIN for every other name (RFC 2308 §2.1). Point a
// resolver at it with a custom dial, e.g. net.Resolver{PreferGo: true, Dial:
// ...} dialing [DNS.Addr]; it never forwards anything to another server.
//
// Its methods may be called from any goroutine.
type DNS struct {
	udp *net.UDPConn
	tcp *net.TCPListener

	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	queries atomic.Int64

	mu     sync.Mutex
	closed bool
	names  map[string][]netip.Addr // lower case, fully qualified
	conns  map[net.Conn]struct{}
}

// dnsListenAttempts bounds the search for a port free for both UDP and TCP.
const dnsListenAttempts = 16

// dnsTTL is the TTL of every answer, in seconds.
const dnsTTL = 60

// NewDNS starts a DNS server with no names. The caller must Close it.
func NewDNS() (*DNS, error) {
	var errs []error
	for range dnsListenAttempts {
		udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return nil, err
		}
		port := udp.LocalAddr().(*net.UDPAddr).Port
		tcp, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err != nil {
			// The TCP port is taken; try another UDP port.
			errs = append(errs, err, udp.Close())
			continue
		}
		d := &DNS{
			udp:   udp,
			tcp:   tcp,
			names: make(map[string][]netip.Addr),
			conns: make(map[net.Conn]struct{}),
		}
		d.wg.Go(d.serveUDP)
		d.wg.Go(d.acceptTCP)
		return d, nil
	}
	return nil, errors.Join(append([]error{errors.New("fault: no port free for both UDP and TCP")}, errs...)...)
}

// Addr returns "127.0.0.1:port", the address for both UDP and TCP.
func (d *DNS) Addr() string { return d.udp.LocalAddr().String() }

// Queries returns how many queries the server has received.
func (d *DNS) Queries() int64 { return d.queries.Load() }

// Add makes name resolve to ip (in addition to the addresses added before):
// an A answer for an IPv4 address, an AAAA answer for an IPv6 one. Names are
// case-insensitive; a trailing dot is optional.
func (d *DNS) Add(name string, ip netip.Addr) {
	name = canonicalName(name)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.names[name] = append(d.names[name], ip.Unmap())
}

// Close stops the server, closes its TCP connections and waits for its
// goroutines.
func (d *DNS) Close() error {
	d.closeOnce.Do(func() {
		d.closeErr = errors.Join(d.udp.Close(), d.tcp.Close())
		d.mu.Lock()
		d.closed = true
		for c := range d.conns {
			_ = c.Close()
		}
		d.mu.Unlock()
		d.wg.Wait()
	})
	return d.closeErr
}

func canonicalName(name string) string {
	name = strings.ToLower(name)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}

func (d *DNS) serveUDP() {
	buf := make([]byte, 64<<10)
	for {
		n, addr, err := d.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // closed
		}
		if resp := d.answer(buf[:n]); resp != nil {
			_, _ = d.udp.WriteToUDPAddrPort(resp, addr)
		}
	}
}

func (d *DNS) acceptTCP() {
	for {
		c, err := d.tcp.Accept()
		if err != nil {
			return // closed
		}
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			_ = c.Close()
			return
		}
		d.conns[c] = struct{}{}
		d.mu.Unlock()
		d.wg.Go(func() {
			defer func() {
				d.mu.Lock()
				delete(d.conns, c)
				d.mu.Unlock()
				_ = c.Close()
			}()
			d.serveTCP(c)
		})
	}
}

// serveTCP answers length-prefixed messages (RFC 1035 §4.2.2) until the
// peer closes the connection or the server is closed.
func (d *DNS) serveTCP(c net.Conn) {
	var size [2]byte
	buf := make([]byte, 64<<10)
	for {
		if _, err := io.ReadFull(c, size[:]); err != nil {
			return
		}
		msg := buf[:binary.BigEndian.Uint16(size[:])]
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		resp := d.answer(msg)
		if resp == nil {
			return
		}
		out := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(resp)), uint16(len(resp)))
		if _, err := c.Write(append(out, resp...)); err != nil {
			return
		}
	}
}

// answer returns the response to the query msg, or nil to drop it.
func (d *DNS) answer(msg []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil || h.Response {
		return nil
	}
	d.queries.Add(1)
	rh := dnsmessage.Header{
		ID:                 h.ID,
		Response:           true,
		OpCode:             h.OpCode,
		Authoritative:      true,
		RecursionDesired:   h.RecursionDesired,
		RecursionAvailable: true,
	}
	q, err := p.Question()
	switch {
	case err != nil:
		rh.RCode = dnsmessage.RCodeFormatError
		return build(rh, nil, nil)
	case h.OpCode != 0:
		rh.RCode = dnsmessage.RCodeNotImplemented
		return build(rh, &q, nil)
	}
	d.mu.Lock()
	addrs, ok := d.names[strings.ToLower(q.Name.String())]
	addrs = append([]netip.Addr(nil), addrs...)
	d.mu.Unlock()
	if !ok || q.Class != dnsmessage.ClassINET {
		rh.RCode = dnsmessage.RCodeNameError
		return build(rh, &q, nil)
	}
	var match []netip.Addr
	for _, a := range addrs {
		if (q.Type == dnsmessage.TypeA && a.Is4()) || (q.Type == dnsmessage.TypeAAAA && a.Is6()) {
			match = append(match, a)
		}
	}
	return build(rh, &q, match)
}

// build encodes a response; it returns nil if encoding fails, which only a
// bug could cause.
func build(h dnsmessage.Header, q *dnsmessage.Question, answers []netip.Addr) []byte {
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), h)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil
	}
	if q != nil {
		if err := b.Question(*q); err != nil {
			return nil
		}
	}
	if err := b.StartAnswers(); err != nil {
		return nil
	}
	for _, a := range answers {
		rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: dnsTTL}
		var err error
		if a.Is4() {
			err = b.AResource(rh, dnsmessage.AResource{A: a.As4()})
		} else {
			err = b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
		if err != nil {
			return nil
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}
