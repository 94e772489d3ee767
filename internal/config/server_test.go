package config

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestLoadServerKeys checks the keys of the downstream server, the TLS
// listener, trusted proxies, max_body and protocol as written, with
// certificate paths made absolute relative to the file's folder.
func TestLoadServerKeys(t *testing.T) {
	c, err := Load("testdata/valid/server.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := Server{
		MaxRequestLine: 4 << 10, MaxHeaderBytes: 16 << 10, MaxHeaderFields: 50,
		ReadHeaderTimeout: Duration(5 * time.Second), BodyTimeout: Duration(20 * time.Second),
		WriteTimeout: Duration(15 * time.Second), IdleTimeout: Duration(60 * time.Second),
		MaxConnections: 5000, H2C: true,
	}
	if diff := cmp.Diff(want, c.Server); diff != "" {
		t.Errorf("server mismatch (-want +got):\n%s", diff)
	}
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	wantTLS := &ListenTLS{
		Listen: "127.0.0.1:8443",
		Certificates: []Certificate{
			{Cert: filepath.Join(dir, "tls.crt"), Key: filepath.Join(dir, "tls.key")},
			{Cert: filepath.Join(dir, "other.crt"), Key: filepath.Join(dir, "other.key")},
		},
		MinVersion: "1.3",
		HTTP2:      new(false),
	}
	if diff := cmp.Diff(wantTLS, c.TLS); diff != "" {
		t.Errorf("tls mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"10.0.0.0/8", "2001:db8::/32"}, c.TrustedProxies); diff != "" {
		t.Errorf("trusted_proxies mismatch (-want +got):\n%s", diff)
	}
	if got := c.Routes[0].MaxBody; got != 1<<20 {
		t.Errorf("max_body = %s, want 1MiB", got)
	}
	if got := c.Upstreams["grpc"].Protocol; got != ProtocolH2 {
		t.Errorf("protocol = %q, want h2", got)
	}
}

// TestServerKeyDefaults checks the defaults of the server keys and of a TLS
// listener written without min_version and http2.
func TestServerKeyDefaults(t *testing.T) {
	c, err := Parse(filepath.Join(t.TempDir(), "c.yaml"), []byte(`
tls:
  listen: 127.0.0.1:8443
  certificates: [{cert: `+abs(t, "testdata/tls.crt")+`, key: `+abs(t, "testdata/tls.key")+`}]
routes: [{name: api, upstream: api}]
upstreams:
  api: {targets: [{url: "http://127.0.0.1:3000"}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := Server{
		MaxRequestLine: 8 << 10, MaxHeaderBytes: 32 << 10, MaxHeaderFields: 100,
		ReadHeaderTimeout: Duration(10 * time.Second), BodyTimeout: Duration(30 * time.Second),
		WriteTimeout: Duration(30 * time.Second), IdleTimeout: Duration(75 * time.Second),
		MaxConnections: 20000,
	}
	if diff := cmp.Diff(want, c.Server); diff != "" {
		t.Errorf("server defaults mismatch (-want +got):\n%s", diff)
	}
	if c.TLS.MinVersion != "1.2" || c.TLS.HTTP2 == nil || !*c.TLS.HTTP2 {
		t.Errorf("tls defaults: min_version %q, http2 %v; want 1.2 and true", c.TLS.MinVersion, c.TLS.HTTP2)
	}
	if c.Routes[0].MaxBody != 64<<20 || c.Upstreams["api"].Protocol != ProtocolHTTP1 {
		t.Errorf("max_body %s, protocol %q; want 64MiB and http1", c.Routes[0].MaxBody, c.Upstreams["api"].Protocol)
	}
	if c.TrustedProxies != nil {
		t.Errorf("trusted_proxies = %v, want none", c.TrustedProxies)
	}
}
