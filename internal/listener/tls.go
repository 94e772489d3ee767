package listener

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"candor/internal/config"
)

// maxCertFile bounds a certificate or key file, as the configuration's
// validation does.
const maxCertFile = 1 << 20

// ALPN protocol ids (RFC 7301; RFC 9113 §3.2, RFC 9112).
const (
	alpnH2     = "h2"
	alpnHTTP11 = "http/1.1"
)

// TLSSettings is one load of the TLS listener's settings: the certificates
// read from their files, the lowest version and the ALPN protocols, and the
// handshake's time limit. A reload loads new settings and hands them to
// [TLS.Update]; the listening socket stays.
type TLSSettings struct {
	config    *tls.Config
	handshake time.Duration
	// Warnings are what an operator should know about certificates that
	// were loaded nonetheless (expired, not yet valid, without names).
	Warnings []string
}

// LoadTLS reads the certificate and key files of cfg's tls section
// (relative names are relative to the folder of cfg.File) and builds the
// TLS listener's settings. An unreadable file, a file that is not PEM, or a
// certificate that does not match its key is an error naming the entry,
// the file and the reason; the settings then stay what they were.
//
// The certificate served is chosen by the client's SNI: the first whose
// names match it (crypto/tls's choice among Certificates, which also skips
// one whose key type the client cannot use), the first of the list when
// none matches or the client sent no SNI.
func LoadTLS(cfg *config.Config) (*TLSSettings, error) {
	t := cfg.TLS
	if t == nil {
		return nil, fmt.Errorf("%s: no tls section", cfg.File)
	}
	dir := filepath.Dir(cfg.File)
	s := &TLSSettings{handshake: cfg.Server.ReadHeaderTimeout.Std()}
	certs := make([]tls.Certificate, 0, len(t.Certificates))
	now := time.Now()
	for i, c := range t.Certificates {
		at := fmt.Sprintf("tls.certificates[%d]", i)
		cert, err := loadPair(abs(dir, c.Cert), abs(dir, c.Key))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", at, err)
		}
		leaf := cert.Leaf
		switch {
		case now.After(leaf.NotAfter):
			s.Warnings = append(s.Warnings, fmt.Sprintf("%s: certificate %q expired on %s", at, c.Cert, leaf.NotAfter.UTC().Format(time.RFC3339)))
		case now.Before(leaf.NotBefore):
			s.Warnings = append(s.Warnings, fmt.Sprintf("%s: certificate %q is not valid before %s", at, c.Cert, leaf.NotBefore.UTC().Format(time.RFC3339)))
		}
		if len(leaf.DNSNames) == 0 && len(leaf.IPAddresses) == 0 {
			s.Warnings = append(s.Warnings, fmt.Sprintf("%s: certificate %q has no DNS or IP subject alternative names: SNI never selects it and clients reject it for any name", at, c.Cert))
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("tls.certificates: at least one {cert, key} pair is required")
	}
	minVersion := uint16(tls.VersionTLS12)
	switch t.MinVersion {
	case "", "1.2":
	case "1.3":
		minVersion = tls.VersionTLS13
	default:
		return nil, fmt.Errorf(`tls.min_version: must be "1.2" or "1.3", got %q`, t.MinVersion)
	}
	protos := []string{alpnHTTP11}
	if t.HTTP2 == nil || *t.HTTP2 {
		protos = []string{alpnH2, alpnHTTP11}
	}
	s.config = &tls.Config{
		Certificates: certs,
		MinVersion:   minVersion,
		NextProtos:   protos,
		// CipherSuites and CurvePreferences stay nil: Go's defaults. For
		// TLS 1.2 they are ECDHE key exchange only (forward secrecy) with
		// AEAD suites (AES-GCM, ChaCha20-Poly1305) preferred and ordered
		// by the machine's AES hardware, then ECDHE CBC suites for old
		// clients; RSA key exchange, 3DES and RC4 are out. TLS 1.3 suites
		// are not configurable and all sound. The key exchanges include
		// the post-quantum hybrid X25519MLKEM768. Go's security team
		// keeps this list current with each release; a list written here
		// would freeze today's choice. HTTP/2 forbids the CBC suites
		// (RFC 9113 §9.2.2); a client offering h2 must support
		// ECDHE with AES-128-GCM (same section) and Go's server prefers
		// AEAD suites, so such a client never ends up with one.
	}
	return s, nil
}

// abs resolves a file name of the configuration against its folder.
func abs(dir, name string) string {
	if name == "" || filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(dir, name)
}

// loadPair reads and parses a PEM certificate chain and its key.
func loadPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := readSmall(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := readSmall(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The configuration's validation words it the same way.
		return tls.Certificate{}, fmt.Errorf("%q and %q are not a usable certificate and key: %w", certFile, keyFile, err)
	}
	if cert.Leaf == nil {
		// X509KeyPair fills Leaf unless GODEBUG x509keypairleaf=0.
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("%q: %w", certFile, err)
		}
	}
	return cert, nil
}

// readSmall reads a regular file of at most maxCertFile bytes.
func readSmall(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("cannot read %q: %w", name, unwrapPath(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("cannot read %q: %w", name, unwrapPath(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%q is not a regular file", name)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxCertFile+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read %q: %w", name, unwrapPath(err))
	}
	if len(data) > maxCertFile {
		return nil, fmt.Errorf("%q is larger than 1MiB", name)
	}
	return data, nil
}

// unwrapPath drops the *os.PathError wrapping, whose text repeats the
// file name.
func unwrapPath(err error) error {
	if pe, ok := errors.AsType[*os.PathError](err); ok {
		return pe.Err
	}
	return err
}

// TLS terminates TLS on a listener's connections and hands each to the
// protocol its client negotiated through ALPN: HTTP/2 ("h2") to an [H2],
// anything else (http/1.1, or no ALPN) to the HTTP/1.1 server. It is the
// TLS listener's [ConnServer].
//
// The tls.Config handshakes use is read through an atomic pointer at each
// ClientHello (tls.Config.GetConfigForClient), so [TLS.Update] swaps
// certificates, version and protocols for new connections without touching
// the listening socket or the connections already running.
//
// ServeConn may be called from any number of goroutines, Update at any
// time.
type TLS struct {
	settings atomic.Pointer[TLSSettings]
	config   *tls.Config
	h1       ConnServer
	h2       *H2
	log      *slog.Logger

	mu sync.Mutex
	// handshaking are the connections in their handshake (neither h1's
	// nor h2's yet), closed by Close.
	handshaking map[net.Conn]struct{}
	closed      bool
}

// NewTLS returns a TLS terminator with settings s that serves HTTP/1.1
// connections with h1 (which takes over the *tls.Conn, handshake done) and
// HTTP/2 connections with h2.
func NewTLS(s *TLSSettings, h1 ConnServer, h2 *H2, log *slog.Logger) *TLS {
	t := &TLS{h1: h1, h2: h2, log: log, handshaking: map[net.Conn]struct{}{}}
	t.settings.Store(s)
	t.config = &tls.Config{
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return t.settings.Load().config, nil
		},
	}
	return t
}

// Update makes s the settings of the handshakes that start from now on.
func (t *TLS) Update(s *TLSSettings) { t.settings.Store(s) }

// H2 returns the HTTP/2 server of the connections that negotiated h2.
func (t *TLS) H2() *H2 { return t.h2 }

// ServeConn runs the TLS handshake on c, within server.read_header_timeout,
// then serves the connection with HTTP/2 or HTTP/1.1 as negotiated. A
// failed handshake (a client that offers only TLS 1.1, a plaintext request,
// a client that stalls) closes c. ServeConn returns when the connection is
// done.
func (t *TLS) ServeConn(c net.Conn) {
	if !t.track(c) {
		c.Close()
		return
	}
	s := t.settings.Load()
	tc := tls.Server(c, t.config)
	if s.handshake > 0 {
		c.SetDeadline(time.Now().Add(s.handshake))
	}
	err := tc.Handshake()
	t.untrack(c)
	if err != nil {
		if t.log.Enabled(context.Background(), slog.LevelDebug) {
			t.log.Debug("TLS handshake failed", "peer", c.RemoteAddr().String(), "error", err.Error())
		}
		if re, ok := errors.AsType[tls.RecordHeaderError](err); ok && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			// A plain HTTP request on the TLS port (an http:// URL
			// with the https port): say so rather than close silently,
			// as net/http does.
			io.WriteString(re.Conn, plainOnTLS)
		}
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	if tc.ConnectionState().NegotiatedProtocol == alpnH2 {
		t.h2.ServeConn(tc)
		return
	}
	t.h1.ServeConn(tc)
}

// plainOnTLS answers a plain HTTP request on the TLS port.
var plainOnTLS = func() string {
	const body = "This port speaks HTTPS: the client sent HTTP.\r\n"
	return "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}()

// looksLikeHTTP reports whether the first five bytes a client sent, read
// as a TLS record header, are the start of an HTTP/1.x request line.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH", "CONNE", "TRACE":
		return true
	}
	return false
}

// track registers a connection in its handshake; false once closed.
func (t *TLS) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.handshaking[c] = struct{}{}
	return true
}

func (t *TLS) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.handshaking, c)
	t.mu.Unlock()
}

// Shutdown drains the HTTP/1.1 and HTTP/2 connections together until ctx
// is done (see [ShutdownAll]). Connections still in their handshake finish
// it (within the handshake's time limit) and are then refused or told to
// go by the drained servers.
func (t *TLS) Shutdown(ctx context.Context) error {
	err := ShutdownAll(ctx, t.h1, t.h2)
	if err != nil {
		t.closeHandshaking()
	}
	return err
}

// Close closes every connection at once, those in their handshake too.
func (t *TLS) Close() error {
	t.closeHandshaking()
	return errors.Join(t.h1.Close(), t.h2.Close())
}

func (t *TLS) closeHandshaking() {
	t.mu.Lock()
	t.closed = true
	conns := make([]net.Conn, 0, len(t.handshaking))
	for c := range t.handshaking {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// ShutdownAll runs the Shutdown of every server at once (each drains its
// own connections, all within ctx) and returns their errors joined.
func ShutdownAll(ctx context.Context, servers ...ConnServer) error {
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Go(func() { errs[i] = s.Shutdown(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

var (
	_ ConnServer = (*TLS)(nil)
	_ ConnServer = (*H2)(nil)
)
