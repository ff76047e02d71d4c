package eventstore_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
)

// A deleted consumer ends the subscription with ErrSubscriptionLost, and
// subscribing again picks up what was never settled.
func TestSubscriptionLost(t *testing.T) {
	e := newEnv(t)
	mustAppend(t, e.store, "lost-1", 0, estest.Event("Created", "{}", ""))
	var delivered atomic.Int64
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- e.store.Subscribe(t.Context(), "lost", func(eventstore.Delivery) { delivered.Add(1) }, // never settled
			eventstore.WithReady(func() { close(ready) }), eventstore.WithPullExpiry(time.Second))
	}()
	<-ready
	waitFor(t, "the first delivery", func() bool { return delivered.Load() == 1 })
	if err := e.js.DeleteConsumer(t.Context(), e.store.StreamName(), "lost"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, eventstore.ErrSubscriptionLost) {
			t.Fatalf("Subscribe after its consumer was deleted: %v, want ErrSubscriptionLost", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Subscribe still running 10s after its consumer was deleted")
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	err := e.store.Subscribe(ctx, "lost", func(d eventstore.Delivery) {
		if d.Event.OrderID == "lost-1" {
			_ = d.Ack()
			cancel()
		}
	})
	if err != nil {
		t.Fatalf("Subscribe again: %v", err)
	}
}

// Several workers handle deliveries at once, never more than asked.
func TestSubscribeWorkers(t *testing.T) {
	e := newEnv(t)
	for _, id := range []string{"w-1", "w-2", "w-3", "w-4"} {
		mustAppend(t, e.store, id, 0, estest.Event("Created", "{}", ""))
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var running, most, handled atomic.Int64
	release := make(chan struct{})
	var releaseOnce sync.Once
	err := e.store.Subscribe(ctx, "workers", func(d eventstore.Delivery) {
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		if n == 2 {
			// Two at once: let them all finish. The last two may run
			// at once too.
			releaseOnce.Do(func() { close(release) })
		}
		<-release
		running.Add(-1)
		_ = d.Ack()
		if handled.Add(1) == 4 {
			cancel()
		}
	}, eventstore.WithWorkers(2), eventstore.WithMaxPending(2))
	if err != nil {
		t.Fatal(err)
	}
	if most.Load() != 2 {
		t.Fatalf("%d handlers ran at once, want 2", most.Load())
	}
}

// Subscribing while JetStream cannot be reached is ErrUnavailable.
func TestSubscribeUnavailable(t *testing.T) {
	e := newEnv(t)
	e.nc.Close()
	err := e.store.Subscribe(t.Context(), "closed", func(eventstore.Delivery) {})
	if !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("Subscribe on a closed connection: %v, want ErrUnavailable", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
