package circuit

import (
	"context"
	"testing"
	"time"
)

func TestUnlimited(t *testing.T) {
	var l *Limiter = New(0, 10, time.Second)
	if l != nil {
		t.Fatal("0 must mean unlimited (nil)")
	}
	for range 1000 {
		if !l.Acquire(context.Background()) {
			t.Fatal("unlimited refused")
		}
	}
	l.Release()
}

func TestRefuseAtOnceWhenQueueFull(t *testing.T) {
	l := New(2, 0, time.Hour)
	ctx := context.Background()
	if !l.Acquire(ctx) || !l.Acquire(ctx) {
		t.Fatal("slots refused")
	}
	start := time.Now()
	if l.Acquire(ctx) {
		t.Fatal("third request admitted past max_concurrent with no queue")
	}
	if time.Since(start) > time.Second {
		t.Fatal("refusal was not immediate")
	}
	l.Release()
	if !l.Acquire(ctx) {
		t.Fatal("a released slot was not reusable")
	}
	if l.InFlight() != 2 {
		t.Fatalf("InFlight %d", l.InFlight())
	}
}

func TestQueueWaitsForASlot(t *testing.T) {
	l := New(1, 1, time.Hour)
	ctx := context.Background()
	l.Acquire(ctx)
	got := make(chan bool)
	go func() { got <- l.Acquire(ctx) }()
	// Wait (bounded) until the second request is queued, then check a
	// third is refused at once.
	deadline := time.Now().Add(5 * time.Second)
	for len(l.pending) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("request never queued")
		}
		time.Sleep(time.Millisecond)
	}
	if l.Acquire(ctx) {
		t.Fatal("admitted past max_pending")
	}
	l.Release()
	if !<-got {
		t.Fatal("queued request did not get the freed slot")
	}
}

func TestQueueTimeoutAndCancel(t *testing.T) {
	l := New(1, 4, 20*time.Millisecond)
	l.Acquire(context.Background())
	if l.Acquire(context.Background()) {
		t.Fatal("admitted without a free slot")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if l.Acquire(ctx) {
		t.Fatal("admitted a canceled request")
	}
}
