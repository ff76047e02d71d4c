package projections

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
)

// smallBatches is a Log whose reads yield the log in batches of size, as a
// read whose read-ahead is smaller than the batch asked for does. Once it
// has handed over signalAt batches it closes signal.
type smallBatches struct {
	n, size  int
	signalAt int
	signal   chan struct{}
}

func (smallBatches) SubjectPrefix() string                  { return "orders" }
func (l smallBatches) Head(context.Context) (uint64, error) { return uint64(l.n), nil }
func (l smallBatches) FollowBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error] {
	return l.ReadBatches(ctx, from, opts...)
}

func (l smallBatches) ReadBatches(_ context.Context, from uint64, _ ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error] {
	return func(yield func(eventstore.Batch, error) bool) {
		var b []eventstore.Entry
		handed := 0
		for p := from; p <= uint64(l.n); p++ {
			b = append(b, eventstore.Entry{Recorded: eventstore.Recorded{Position: p, OrderID: "o", Type: "Unknown"}})
			if len(b) == l.size || p == uint64(l.n) {
				if !yield(eventstore.Batch{Entries: b}, nil) {
					return
				}
				b = nil
				if handed++; handed == l.signalAt {
					close(l.signal)
				}
			}
		}
	}
}

// A replay commits once per batch it applies, so while the receiver is
// busy decodeRange gathers what the read yields (batches of 700 here) into
// one batch, up to rebuildBatch events, and a ready receiver gets what has
// arrived at once. Every event is delivered once, in order.
//
// With a pool of slices, as readRange runs it, the receiver hands each
// batch back once it has read it, and the batches it reads are not
// disturbed by the slices being filled again.
func TestDecodeRangeGathersWhileTheReceiverIsBusy(t *testing.T) {
	for _, pool := range []itemSlices{nil, make(itemSlices, 4)} {
		t.Run(fmt.Sprintf("pool=%v", pool != nil), func(t *testing.T) { decodeRangeGathers(t, pool) })
	}
}

func decodeRangeGathers(t *testing.T, pool itemSlices) {
	const n, size = 3 * rebuildBatch, 700
	full := (rebuildBatch + size - 1) / size // read batches that fill a gathered one
	log := smallBatches{n: n, size: size, signalAt: full, signal: make(chan struct{})}
	r := &Runner{events: log}
	out := make(chan []Item)
	done := make(chan error, 1)
	go func() {
		defer close(out)
		done <- r.decodeRange(t.Context(), 1, n, out, pool)
	}()
	// Nobody receives until the read has handed over a full batch's
	// worth, so all of it must come as one batch.
	select {
	case <-log.signal:
	case <-time.After(30 * time.Second):
		t.Fatal("the read stalled: nothing was gathered while nobody received")
	}
	var sizes []int
	var positions []uint64
	for batch := range out {
		sizes = append(sizes, len(batch))
		for _, it := range batch {
			positions = append(positions, it.Rec.Position)
		}
		pool.put(batch)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if sizes[0] != full*size {
		t.Fatalf("batches %v: want the first to hold the %d events gathered before anyone received", sizes, full*size)
	}
	for i, s := range sizes {
		if s > rebuildBatch+size-1 {
			t.Fatalf("batch %d of %v holds %d events, more than gathering allows", i, sizes, s)
		}
	}
	want := make([]uint64, n)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	if !slices.Equal(positions, want) {
		t.Fatalf("read %d events, want positions 1..%d once each in order", len(positions), n)
	}
}
