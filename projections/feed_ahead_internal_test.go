package projections

import (
	"math"
	"testing"
)

// A watch from now has no change of its own to skip, so the feed does not
// keep it among the subscriptions resuming ahead of it, which every
// publish looks through: it stayed there for its whole life, and every
// commit, under the runner's apply lock, looked at every such watch. It
// still gets every change after it subscribed, and one resuming ahead
// still skips its own last change.
func TestWatchFromNowIsNotKeptAhead(t *testing.T) {
	f := NewFeed(0)
	f.start(1, false)
	now, _, _, _ := f.Subscribe("o-1", nil, 16, math.MaxUint64)
	resumed, _, _, _ := f.Subscribe("o-1", nil, 16, 2)
	f.mu.Lock()
	_, nowAhead := f.ahead[now]
	_, resumedAhead := f.ahead[resumed]
	f.mu.Unlock()
	if nowAhead || !resumedAhead {
		t.Fatalf("kept ahead: the watch from now %v, the one resuming at 2 %v; want only the one resuming", nowAhead, resumedAhead)
	}
	f.publish(2, []Change{{Position: 2, OrderID: "o-1"}}, nil)
	f.publish(3, []Change{{Position: 3, OrderID: "o-1"}}, nil)
	for _, w := range []struct {
		s    *Subscription
		want []uint64
	}{{now, []uint64{2, 3}}, {resumed, []uint64{3}}} {
		var got []uint64
		for len(w.s.c) > 0 {
			got = append(got, (<-w.s.c).Position)
		}
		if len(got) != len(w.want) || got[0] != w.want[0] {
			t.Errorf("sent %v, want %v", got, w.want)
		}
	}
}
