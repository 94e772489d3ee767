// Package fault is a misbehaving upstream on loopback: raw TCP, TLS and DNS
// servers that reproduce, on demand, every upstream failure in candor's cause
// table (package [candor/internal/failure]), plus valid responses that a
// strict gateway must pass through unchanged.
//
// candor's end-to-end tests and the `candor demo` command both use it, so it
// is production code: it never imports "testing", keeps no package-level
// mutable state, listens on 127.0.0.1 only, bounds every loop and wait, and
// every Close waits for the goroutines it started.
//
// The pieces:
//
//   - [Scripts] and [Lookup]: the catalog of raw upstream byte streams, one per
//     file under testdata/upstream/<cause>/<name>.http, grouped by the cause
//     id a strict gateway must report (or "pass" for valid responses).
//   - [NewServer], [NewScriptServer] and [NewTLSServer]: a keep-alive HTTP/1.1
//     upstream dispatching on the request path (/script/..., /ok,
//     /status/<code>, /close, /reset, /stall-head, /stall-body, /big,
//     /chunked, /echo); see [Server] for the full list.
//   - [RefusedAddr] (connection refused) and [NewBacklogFull] (connect
//     timeout).
//   - [NewCA]: an in-memory certificate authority for TLS tests.
//   - [NewDNS]: an authoritative DNS server that answers NXDOMAIN for every
//     name not added with [DNS.Add].
package fault
