//go:build !linux

package fault

import "errors"

// Backlog is a listener whose accept queue is full. It works on Linux only;
// see the Linux build of [NewBacklogFull].
type Backlog struct{}

// NewBacklogFull returns [errors.ErrUnsupported] outside Linux.
func NewBacklogFull() (*Backlog, error) { return nil, errors.ErrUnsupported }

// Addr returns "".
func (b *Backlog) Addr() string { return "" }

// Close does nothing.
func (b *Backlog) Close() error { return nil }
