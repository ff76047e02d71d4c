package projections

import (
	"context"
	"iter"
	"slices"
	"testing"

	"github.com/orderstream/orderstream/eventstore"
)

// smallBatches is a Log whose reads yield the log in batches of size, as a
// read whose read-ahead is smaller than the batch asked for does.
type smallBatches struct {
	n, size int
}

func (smallBatches) SubjectPrefix() string                  { return "orders" }
func (l smallBatches) Head(context.Context) (uint64, error) { return uint64(l.n), nil }
func (l smallBatches) FollowBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error] {
	return l.ReadBatches(ctx, from, opts...)
}

func (l smallBatches) ReadBatches(_ context.Context, from uint64, _ ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error] {
	return func(yield func(eventstore.Batch, error) bool) {
		var b []eventstore.Entry
		for p := from; p <= uint64(l.n); p++ {
			b = append(b, eventstore.Entry{Recorded: eventstore.Recorded{Position: p, OrderID: "o", Type: "Unknown"}})
			if len(b) == l.size || p == uint64(l.n) {
				if !yield(eventstore.Batch{Entries: b}, nil) {
					return
				}
				b = nil
			}
		}
	}
}

// A replay commits once per batch it applies, so readRange gathers the
// small batches a read yields into batches of rebuildBatch events or more
// (the last excepted), every event once and in order.
func TestReadRangeGathersCommitSizedBatches(t *testing.T) {
	const n = 2*rebuildBatch + 300
	r := &Runner{events: smallBatches{n: n, size: 700}}
	var sizes []int
	var positions []uint64
	err := r.readRange(t.Context(), 1, n, func(batch []Item) error {
		sizes = append(sizes, len(batch))
		for _, it := range batch {
			positions = append(positions, it.Rec.Position)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range sizes[:len(sizes)-1] {
		if s < rebuildBatch {
			t.Fatalf("batch %d of %v holds %d events, want at least %d", i, sizes, s, rebuildBatch)
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
