package eventstore_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
)

// Messages that are not events are entries with Err set, carrying what
// could be read of them, and the reads go on past them.
func TestBatchReadsDeliverMalformedMessages(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	estest.AppendRoundRobin(t, e.store, 2, 1)
	m := nats.NewMsg(e.store.Subject("bad"))
	m.Header.Set(eventstore.HeaderHash, "abc")
	m.Header.Set(eventstore.HeaderVersion, "x")
	m.Header.Set(eventstore.HeaderEventType, "E")
	if _, err := e.js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Append(ctx, "after", 0, []eventstore.EventData{{Type: "E"}}); err != nil {
		t.Fatal(err)
	}
	check := func(name string, got []eventstore.Entry) {
		t.Helper()
		if !slices.Equal(estest.EntryPositions(got), estest.Span(1, 4)) {
			t.Fatalf("%s: %v, want 1..4", name, estest.EntryPositions(got))
		}
		bad := got[2]
		if !errors.Is(bad.Err, eventstore.ErrMalformedEvent) || bad.OrderID != "bad" || bad.Type != "E" || bad.Meta.Hash != "abc" || bad.Time.IsZero() {
			t.Fatalf("%s: malformed entry %+v", name, bad)
		}
		for _, i := range []int{0, 1, 3} {
			if got[i].Err != nil {
				t.Fatalf("%s: entry %d: %v", name, i, got[i].Err)
			}
		}
	}
	got, err := estest.ReadAll(t, e.store.ReadBatches(ctx, 0), eventstore.DefaultBatchSize)
	if err != nil {
		t.Fatal(err)
	}
	check("ReadBatches", got)
	check("FollowBatches", estest.Follow(t, e.store, 0).Until(t, 4))
}

// A follow ends with ErrUnavailable when its connection closes, and a read
// cannot start without one.
func TestBatchReadsConnectionClosed(t *testing.T) {
	e := newEnv(t)
	estest.AppendRoundRobin(t, e.store, 1, 1)
	f := estest.Follow(t, e.store, 0)
	f.Next(t)
	e.nc.Close()
	select {
	case b := <-f.Batches:
		if !errors.Is(b.Err, eventstore.ErrUnavailable) {
			t.Fatalf("follow after the connection closed: %d entries, %v; want ErrUnavailable", len(b.Entries), b.Err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not end within 10s of its connection closing")
	}
	if _, err := estest.ReadAll(t, e.store.ReadBatches(t.Context(), 0, eventstore.UpTo(1)), 1); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("ReadBatches on a closed connection: %v, want ErrUnavailable", err)
	}
}

// A batch may ask for more entries than a read keeps asked for ahead of
// it (2,000 messages): the read still delivers the whole log, in order,
// and a follow catches up with it.
func TestBatchesLargerThanTheReadAhead(t *testing.T) {
	const n = 2500
	e := newEnv(t)
	estest.AppendRoundRobin(t, e.store, n, 50)
	got, err := estest.ReadAll(t, e.store.ReadBatches(t.Context(), 1, eventstore.BatchSize(eventstore.MaxBatchSize)), eventstore.MaxBatchSize)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(estest.EntryPositions(got), estest.Span(1, n)) {
		t.Fatalf("read %d entries, want positions 1..%d in order", len(got), n)
	}
	f := estest.Follow(t, e.store, 1, eventstore.BatchSize(eventstore.MaxBatchSize))
	if got := f.Until(t, n); !slices.Equal(estest.EntryPositions(got), estest.Span(1, n)) {
		t.Fatalf("followed %d entries, want positions 1..%d in order", len(got), n)
	}
}

// A read's consumer is deleted when the read ends, however it ends: the
// server allows 1,000 consumers a stream, and consumers left for their
// inactive threshold by a burst of reads (audit exports, runner restarts)
// made it refuse every new read, the projection's included.
func TestReadsLeaveNoConsumer(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	estest.AppendRoundRobin(t, e.store, 3, 1)
	for range 5 {
		if _, err := estest.ReadAll(t, e.store.ReadBatches(ctx, 0), 10); err != nil {
			t.Fatal(err)
		}
	}
	fctx, cancel := context.WithCancel(ctx)
	for b, err := range e.store.FollowBatches(fctx, 0) {
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Entries) > 0 {
			cancel() // a follow ended by its caller
		}
	}
	cancel()
	st, err := e.js.Stream(ctx, e.store.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Consumers; n != 0 {
		t.Fatalf("%d consumers left on the stream after the reads ended, want 0", n)
	}
}

// A read its caller cancels with a cause of its own ends with the
// cancellation and the cause, not ErrUnavailable, which only a deadline
// counts as: the cause alone wraps neither.
func TestReadBatchesCancelledWithACauseIsCancelled(t *testing.T) {
	e := newEnv(t)
	estest.AppendRoundRobin(t, e.store, 3, 1)
	cause := errors.New("client went away")
	for range 20 {
		ctx, cancel := context.WithCancelCause(t.Context())
		var last error
		for _, err := range e.store.ReadBatches(ctx, 0, eventstore.BatchSize(1), eventstore.UpTo(3)) {
			if last = err; err == nil {
				cancel(cause)
			}
		}
		cancel(nil)
		if last == nil {
			continue // the read ended before the cancellation took
		}
		if errors.Is(last, eventstore.ErrUnavailable) || !errors.Is(last, context.Canceled) || !errors.Is(last, cause) {
			t.Fatalf("ReadBatches cancelled with a cause ended with %v; want the cancellation and its cause, not ErrUnavailable", last)
		}
	}
}
