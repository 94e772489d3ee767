package listener

import (
	"io"
	"strings"
	"testing"
	"time"
)

// deadlines records the read deadlines set on a stream.
type deadlines struct{ set []time.Time }

func (d *deadlines) SetReadDeadline(t time.Time) error {
	d.set = append(d.set, t)
	return nil
}

func (d *deadlines) SetWriteDeadline(t time.Time) error {
	d.set = append(d.set, t)
	return nil
}

// readCheck is a body that checks the deadline is armed during each Read.
type readCheck struct {
	io.Reader
	t *testing.T
	d *deadlines
}

func (r readCheck) Read(p []byte) (int, error) {
	if n := len(r.d.set); n == 0 || r.d.set[n-1].IsZero() {
		r.t.Error("Read without a deadline")
	}
	return r.Reader.Read(p)
}

func (readCheck) Close() error { return nil }

// TestTimedBodyArmsOnlyWhileReading checks that body_timeout runs only
// while a Read waits: between reads the handler may be busy for as long as
// it likes without the client being blamed.
func TestTimedBodyArmsOnlyWhileReading(t *testing.T) {
	d := &deadlines{}
	b := &timedBody{body: readCheck{Reader: strings.NewReader("abc"), t: t, d: d}, dl: d, timeout: time.Minute}
	buf := make([]byte, 1)
	for i := range 3 {
		before := time.Now()
		if _, err := b.Read(buf); err != nil {
			t.Fatal(err)
		}
		set := d.set[2*i:]
		if len(set) != 2 || set[0].Before(before.Add(time.Minute)) || !set[1].IsZero() {
			t.Fatalf("read %d: deadlines %v, want now+timeout then cleared", i, set)
		}
	}
}
