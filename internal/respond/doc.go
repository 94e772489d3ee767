// Package respond renders the responses candor generates itself when a
// request fails, and assigns request ids.
//
// [Problem] writes the error response for a [failure.Kind]: the status, the
// title and the client-facing detail all come from the cause table in package
// failure, in the format the client's Accept header prefers (see
// [Negotiate]): RFC 9457 problem+json by default, a small HTML page for
// browsers, plain text otherwise. [Render] produces the same bodies without
// writing them.
//
// The one rule of this package: an error response contains nothing but the
// table's fixed strings and the request id. No upstream name, address, port,
// raw upstream bytes or internal error text ever reaches a client; those go
// to logs only. The request id, although validated by [RequestID] before it
// gets here, is escaped for every format anyway.
//
// [RequestID] returns the client's X-Request-Id when it is sane, or a fresh
// id from [NewRequestID], whose form (32 lowercase hex digits) is also a valid
// W3C Trace Context trace-id.
//
// Everything here is safe for concurrent use; the package has no mutable
// state. The render path performs no reflection and, for [Problem], two heap
// allocations (see BenchmarkProblemJSON).
package respond
