//go:build linux

package h1

import (
	"container/heap"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// idlePoller holds idle keep-alive connections without a goroutine each:
// their sockets are in one epoll set (EPOLLIN | EPOLLRDHUP, one-shot), and
// one goroutine waits on that set through Go's own poller (the epoll
// descriptor is itself pollable), with a read deadline at the earliest
// idle timeout. When a connection becomes readable (or its peer closes
// it) a busy goroutine is started for it; when its idle timeout passes it
// is ended.
//
// Written by hand because neither the standard library nor x/net has
// this: Go's network poller wakes goroutines, and a goroutine parked per
// connection costs at least its 2 KiB stack and descriptor, which for
// 10,000 idle clients (and the GC's heap goal that grows with them) is
// most of the server's memory. An idle connection here costs its conn,
// a map entry and a heap slot.
type idlePoller struct {
	f    *os.File
	rc   syscall.RawConn
	epfd int

	mu    sync.Mutex
	conns map[uint64]*conn // parked, by their epoll id
	next  uint64           // the last id given
	heap  idleHeap         // parked, by idle deadline
	until time.Time        // the read deadline set on f (zero: none)
	n     int              // events read by the last wait (loop only)
	err   error            // the last wait's error (loop only)
}

var (
	idleOnce sync.Once
	idleP    atomic.Pointer[idlePoller]
)

// pollerOf returns the process's idle poller, or nil where it cannot run.
func pollerOf() *idlePoller {
	idleOnce.Do(func() {
		if p, err := newIdlePoller(); err == nil {
			idleP.Store(p)
			go p.loop()
		}
	})
	return idleP.Load()
}

func newIdlePoller() (*idlePoller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, err
	}
	// Non-blocking: os.NewFile registers it with Go's poller.
	f := os.NewFile(uintptr(epfd), "h1-idle-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &idlePoller{f: f, rc: rc, epfd: epfd, conns: make(map[uint64]*conn)}, nil
}

// park hands c, idle, to the poller until it becomes readable or until
// passes; false when it could not (the caller waits on a goroutine).
func (p *idlePoller) park(c *conn, until time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	id := p.next
	op := unix.EPOLL_CTL_ADD
	if c.epollAdded {
		op = unix.EPOLL_CTL_MOD // the one-shot registration is disarmed, not gone
	}
	var cerr error
	// Control keeps the descriptor open while it is used, so that a
	// number a closed connection freed is never registered by mistake.
	err := c.rc.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT}
		ev.Fd, ev.Pad = int32(uint32(id)), int32(uint32(id>>32))
		cerr = unix.EpollCtl(p.epfd, op, int(fd), &ev)
		switch {
		case cerr == unix.EEXIST && op == unix.EPOLL_CTL_ADD:
			cerr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev)
		case cerr == unix.ENOENT && op == unix.EPOLL_CTL_MOD:
			cerr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
		}
	})
	if err != nil || cerr != nil {
		return false
	}
	c.epollAdded = true
	if c.state.Load() == stateClosed {
		// Shutdown or Close chose it before it got here, and found it
		// nowhere to take: it is closed by them, so it may not wait here.
		return false
	}
	c.parkID, c.parkUntil = id, until.UnixNano()
	p.conns[id] = c
	heap.Push(&p.heap, c)
	if p.until.IsZero() || until.Before(p.until) {
		p.setDeadline(until)
	}
	return true
}

// take removes c from the poller if it is parked there: the caller then
// owns it.
func (p *idlePoller) take(c *conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.parkID == 0 || p.conns[c.parkID] != c {
		return false
	}
	p.remove(c)
	return true
}

// remove forgets a parked connection; p.mu is held.
func (p *idlePoller) remove(c *conn) {
	delete(p.conns, c.parkID)
	heap.Remove(&p.heap, c.heapIdx)
	c.parkID, c.heapIdx = 0, -1
}

func (p *idlePoller) setDeadline(t time.Time) {
	p.until = t
	p.f.SetReadDeadline(t)
}

// errIdleTimeout ends a connection whose idle timeout passed in the
// poller.
var errIdleTimeout = errors.New("h1: idle timeout")

// errRepark makes a connection wait again, on a goroutine.
var errRepark = errors.New("h1: wait again")

// loop waits for the parked connections' events and deadlines and starts
// their busy goroutines.
func (p *idlePoller) loop() {
	events := make([]unix.EpollEvent, 256)
	wait := func(fd uintptr) bool {
		n, err := unix.EpollWait(int(fd), events, 0)
		if err != nil {
			n = 0
		}
		p.n, p.err = n, err
		// No events: wait for the epoll descriptor to be readable.
		return n > 0 || err != nil
	}
	var woken, expired []*conn
	// Runs for the life of the process; each round handles what the
	// wait returned.
	for {
		err := p.rc.Read(wait)
		if err == nil && p.err == unix.EINTR {
			continue
		}
		broken := err != nil && !isTimeout(err) || p.err != nil
		if broken {
			idleP.Store(nil) // new idle connections wait on goroutines
		}
		now := time.Now().UnixNano()
		p.mu.Lock()
		for _, ev := range events[:p.n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if c := p.conns[id]; c != nil {
				p.remove(c)
				woken = append(woken, c)
			}
		}
		p.n = 0
		for len(p.heap) > 0 && (broken || p.heap[0].parkUntil <= now) {
			c := p.heap[0]
			p.remove(c)
			expired = append(expired, c)
		}
		next := time.Time{}
		if len(p.heap) > 0 {
			next = time.Unix(0, p.heap[0].parkUntil)
		}
		if !next.Equal(p.until) {
			p.setDeadline(next)
		}
		p.mu.Unlock()
		for _, c := range woken {
			c.waitErr, c.woke = nil, true
			go c.busy()
		}
		for _, c := range expired {
			c.waitErr = errIdleTimeout
			if broken {
				c.waitErr = errRepark
			}
			go c.busy()
		}
		clear(woken)
		clear(expired)
		woken, expired = woken[:0], expired[:0]
		if broken {
			// The epoll descriptor failed (it never does in practice):
			// parked connections went back to waiting on goroutines, and
			// new ones go there from now on.
			return
		}
	}
}

// idleHeap orders parked connections by idle deadline.
type idleHeap []*conn

func (h idleHeap) Len() int           { return len(h) }
func (h idleHeap) Less(i, j int) bool { return h[i].parkUntil < h[j].parkUntil }
func (h idleHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *idleHeap) Push(x any) {
	c := x.(*conn)
	c.heapIdx = len(*h)
	*h = append(*h, c)
}
func (h *idleHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return c
}
