// Package hardening holds no code: its tests prove that candor's downstream
// side is hard to fool. They run the real gateway (reload.Start from a YAML
// configuration, on a real listener) in front of a strict recording
// upstream, a raw TCP server that parses every request it receives per RFC
// 9112 and records exactly what arrived, and then they attack the gateway
// over raw sockets:
//
//   - a table-driven battery of hostile and malformed requests (request
//     smuggling through Content-Length and Transfer-Encoding, obfuscated
//     codings, malformed chunked bodies, malformed heads and Host fields,
//     limits and slow clients, hop-by-hop abuse, spoofed forwarding fields,
//     100-continue and pipelining), each with the status and cause the
//     client must get, whether the connection must close, and exactly what
//     the upstream must see: nothing, or the request in the same shape;
//   - a fuzz test (FuzzGateway) that throws arbitrary bytes at the gateway
//     and checks the invariant that makes request smuggling impossible: every
//     request the upstream receives is one the gateway answered, in order,
//     in the shape that candor's request decision table gives the client's
//     bytes, and never more requests than answers.
//
// The decision table the tests encode (and the reference parser of the fuzz
// test implements) is the one documented for candor's HTTP/1.1 server:
// strict request line and fields, one unambiguous framing, a valid Host,
// limits answered 414/431/413/408, and refusals that close the connection.
package hardening
