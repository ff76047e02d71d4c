package projections

import (
	"errors"
	"slices"
	"testing"
)

func changes(from, to uint64, order string) []Change {
	var out []Change
	for p := from; p <= to; p++ {
		out = append(out, Change{Position: p, OrderID: order})
	}
	return out
}

func positions(cs []*Change) []uint64 {
	var out []uint64
	for _, c := range cs {
		out = append(out, c.Position)
	}
	return out
}

func TestFeedHistoryAndOverflow(t *testing.T) {
	f := NewFeed(3)
	f.start(10)
	f.publish(14, changes(11, 14, "a"))
	// The history keeps 12-14: resuming after 11 is complete, after 10 is
	// not.
	if _, pub, backlog, ok := f.Subscribe("a", nil, 8, 11); !ok || pub != 14 || !slices.Equal(positions(backlog), []uint64{12, 13, 14}) {
		t.Fatalf("after 11: published %d, backlog %v, ok %v", pub, positions(backlog), ok)
	}
	if _, _, _, ok := f.Subscribe("", nil, 8, 10); ok {
		t.Fatal("after 10: reported complete")
	}
	slow, _, _, _ := f.Subscribe("b", nil, 2, 14)
	other, _, _, _ := f.Subscribe("", func(c *Change) bool { return c.OrderID == "b" }, 8, 14)
	f.publish(17, changes(15, 17, "b"))
	if !errors.Is(slow.Err(), ErrOverflow) {
		t.Fatalf("slow watcher: %v, want ErrOverflow", slow.Err())
	}
	// What it had buffered stays readable; the other watcher got all.
	if got := []uint64{(<-slow.C()).Position, (<-slow.C()).Position}; !slices.Equal(got, []uint64{15, 16}) {
		t.Fatalf("slow watcher's buffer: %v", got)
	}
	if len(other.C()) != 3 || other.Err() != nil {
		t.Fatalf("other watcher: %d buffered, %v", len(other.C()), other.Err())
	}
	// A restart at a checkpoint the feed published does not publish twice.
	f.start(15)
	f.publish(17, changes(16, 17, "b"))
	if len(other.C()) != 3 {
		t.Fatalf("republished: %d buffered", len(other.C()))
	}
}
