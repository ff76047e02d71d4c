package projections

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/orderstream/orderstream/order"
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
	f.start(10, false)
	f.publish(14, changes(11, 14, "a"), nil)
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
	// A commit larger than its buffer is held for a watcher that was not
	// behind when it came; the next finds it a buffer behind, and ends it.
	f.publish(17, changes(15, 17, "b"), nil)
	if slow.Err() != nil {
		t.Fatalf("a watcher with nothing unread, handed a commit larger than its buffer: %v", slow.Err())
	}
	f.publish(18, changes(18, 18, "b"), nil)
	if !errors.Is(slow.Err(), ErrOverflow) {
		t.Fatalf("slow watcher: %v, want ErrOverflow", slow.Err())
	}
	// What it had buffered stays readable; the other watcher got all.
	if got := []uint64{(<-slow.C()).Position, (<-slow.C()).Position}; !slices.Equal(got, []uint64{15, 16}) {
		t.Fatalf("slow watcher's buffer: %v", got)
	}
	if len(other.C()) != 4 || other.Err() != nil {
		t.Fatalf("other watcher: %d buffered, %v", len(other.C()), other.Err())
	}
	// A restart at a checkpoint the feed published does not publish twice.
	f.start(15, false)
	f.publish(18, changes(16, 18, "b"), nil)
	if len(other.C()) != 4 {
		t.Fatalf("republished: %d buffered", len(other.C()))
	}
}

// A watcher that reads as changes come is handed a commit larger than its
// buffer whole, in order (an erasure of a customer with more orders than
// the buffer, a commit of a catch-up). Before, the commit ended it with
// ErrOverflow however fast it read.
func TestFeedHandsACommitLargerThanTheBufferToAWatcherKeepingUp(t *testing.T) {
	f := NewFeed(0)
	f.start(0, false)
	sub, _, _, _ := f.Subscribe("", nil, 4, 0)
	defer sub.Close()
	for _, commit := range [][2]uint64{{1, 10}, {11, 11}, {12, 30}} {
		f.publish(commit[1], changes(commit[0], commit[1], "a"), nil)
		for want := commit[0]; want <= commit[1]; want++ {
			select {
			case c := <-sub.C():
				if c.Position != want {
					t.Fatalf("change at %d, want %d", c.Position, want)
				}
			case <-sub.Done():
				t.Fatalf("ended before the change at %d: %v", want, sub.Err())
			}
		}
	}
	if sub.Err() != nil {
		t.Fatalf("a watcher keeping up: %v", sub.Err())
	}
}

// A feed that restarts ahead of what it published (the read model's
// checkpoint moved past changes it never saw) ends every open
// subscription with ErrFeedRestarted, so that no watcher misses them
// without a word; a restart at or below its position ends none, and a
// subscription made after the restart follows it.
func TestFeedRestartedAheadEndsItsWatchers(t *testing.T) {
	f := NewFeed(8)
	f.start(10, false)
	f.publish(12, changes(11, 12, "a"), nil)
	one, _, _, _ := f.Subscribe("a", nil, 8, 12)
	two, _, _, _ := f.Subscribe("a", nil, 8, 12)
	other, _, _, _ := f.Subscribe("b", nil, 8, 12)
	all, _, _, _ := f.Subscribe("", nil, 8, 12)
	f.start(12, false)
	if one.Err() != nil || all.Err() != nil {
		t.Fatalf("a restart at the feed's position ended watchers: %v, %v", one.Err(), all.Err())
	}
	f.start(50, false)
	for _, s := range []*Subscription{one, two, other, all} {
		select {
		case <-s.Done():
		default:
			t.Fatal("a watcher stays open across a restart ahead of the feed")
		}
		if !errors.Is(s.Err(), ErrFeedRestarted) {
			t.Fatalf("watcher ended with %v, want ErrFeedRestarted", s.Err())
		}
		s.Close() // after the feed ended it: a no-op
	}
	if n := f.Watchers(); n != 0 {
		t.Fatalf("%d watchers left", n)
	}
	// Resuming from before the restart finds the history gone.
	if _, pub, _, ok := f.Subscribe("", nil, 8, 12); ok || pub != 50 {
		t.Fatalf("resume from 12: published %d, ok %v; want 50 and an incomplete history", pub, ok)
	}
	after, _, _, _ := f.Subscribe("a", nil, 8, 50)
	f.publish(51, changes(51, 51, "a"), nil)
	if c := <-after.C(); c.Position != 51 || after.Err() != nil {
		t.Fatalf("after the restart: %d, %v", c.Position, after.Err())
	}
}

// addr is a shipping address, personal data an erasure removes.
func addr() *order.Address {
	return &order.Address{Name: "Ada", Line1: "1 Analytical Way", Country: "GB"}
}

// Publishing a batch that forgot a customer erases the personal data of
// the changes of the customer's orders from before the erasure: those the
// feed keeps, and those committed with the erasure (held before it), before
// any watcher sees them. Another customer's changes, and what came after
// the erasure (the customer's data sealed under a new key), stay as they
// were, and a change a watcher already holds is not modified under it.
func TestFeedPublishErasesWhatAForgetCovers(t *testing.T) {
	f := NewFeed(0)
	held, _, _, _ := f.Subscribe("o-1", nil, 8, 0)
	f.publish(4, []Change{
		{Position: 1, OrderID: "o-1", State: order.State{CustomerID: "c", Shipping: addr()}},
		{Position: 2, OrderID: "o-2", State: order.State{CustomerID: "other", Shipping: addr()}},
		{Position: 3, OrderID: "o-1", State: order.State{CustomerID: "c", Shipping: addr(), TrackingNumber: "JD1"}},
		{Position: 4, OrderID: "o-1", State: order.State{CustomerID: "c"}},
	}, nil)
	live, _, _, _ := f.Subscribe("", nil, 8, 4)
	f.publish(6, []Change{{Position: 5, OrderID: "o-3", State: order.State{CustomerID: "c", Shipping: addr()}}},
		[]forgotten{{customerID: "c", at: 6}})
	if c := <-live.C(); c.Position != 5 || holdsPersonalData(c.State) {
		t.Errorf("a live watcher got the change held before the erasure as %+v; want it erased", c.State)
	}
	f.publish(7, []Change{{Position: 7, OrderID: "o-1", State: order.State{CustomerID: "c", Shipping: addr()}}},
		[]forgotten{{customerID: "c", at: 7}}) // the change at 7 is the customer's new data
	_, _, backlog, ok := f.Subscribe("", nil, 8, 0)
	if !ok || len(backlog) != 6 {
		t.Fatalf("backlog %v, ok %v", positions(backlog), ok)
	}
	for _, c := range backlog {
		switch c.Position {
		case 1, 3, 5:
			if holdsPersonalData(c.State) || !c.State.Shipping.Erased || (c.Position == 3 && !c.State.TrackingNumberErased) {
				t.Errorf("change at %d: %+v; want its personal data erased", c.Position, c.State)
			}
		case 2, 7:
			if !holdsPersonalData(c.State) {
				t.Errorf("change at %d (customer %s) was erased", c.Position, c.State.CustomerID)
			}
		}
	}
	first := <-held.C()
	if first.State.Shipping.Line1 == "" {
		t.Error("the change a watcher held was modified under it")
	}
	// Sent after the erasure, it goes out erased: before, a watcher sent
	// what it had buffered with the data the erasure removed.
	if sent, ok := held.Fresh(first); !ok || holdsPersonalData(sent.State) || !sent.State.Shipping.Erased {
		t.Errorf("the held change as sent after the erasure: %+v (%v); want its personal data erased", sent, ok)
	}
	if c, ok := held.Fresh(&Change{Position: 7, OrderID: "o-1", State: order.State{CustomerID: "c", Shipping: addr()}}); !ok || !holdsPersonalData(c.State) {
		t.Error("a change from after the latest erasure was erased")
	}
}

// A watcher whose client stopped reading holds a change from before its
// customer's erasure while more customers are forgotten than the feed
// remembers: Fresh cannot tell any more whether an erasure applies, and
// says so, rather than hand out the address. A watcher that resumes then
// gets the history, erased in place, and Fresh tells again.
func TestChangeHeldThroughMoreErasuresThanRememberedIsNotSent(t *testing.T) {
	f := NewFeed(0)
	f.start(0, false)
	held, _, _, _ := f.Subscribe("o-1", nil, 16, 0)
	t.Cleanup(held.Close)
	f.publish(2, []Change{
		{Position: 1, OrderID: "o-1", State: order.State{CustomerID: "c-1", Shipping: addr()}},
		{Position: 2, OrderID: "o-2", State: order.State{CustomerID: "c-2", Shipping: addr()}},
	}, nil)
	first := <-held.C()
	f.publish(3, nil, []forgotten{{customerID: "c-1", at: 3}})
	if c, ok := held.Fresh(first); !ok || holdsPersonalData(c.State) {
		t.Fatalf("right after the erasure, the held change is sent as %+v (%v); want it erased", c, ok)
	}
	// However the feed makes room, c-1's erasure goes within so many.
	said := false
	for i := range 64 * maxErasures {
		pos := uint64(4 + i)
		f.publish(pos, nil, []forgotten{{customerID: fmt.Sprint("other-", i), at: pos}})
		if i%(maxErasures/16) != 0 {
			continue
		}
		c, ok := held.Fresh(first)
		if !ok {
			said = true
			break
		}
		if holdsPersonalData(c.State) {
			t.Fatalf("after %d erasures of other customers, the change held from before c-1's erasure is sent with its address: %+v", i+1, c.State.Shipping)
		}
	}
	if !said {
		t.Fatal("Fresh never said it could no longer tell, though c-1's erasure had to go")
	}
	resumed, _, backlog, complete := f.Subscribe("", nil, 16, 0)
	t.Cleanup(resumed.Close)
	if !complete || len(backlog) != 2 {
		t.Fatalf("resumed backlog %v (complete %v), want the two changes", positions(backlog), complete)
	}
	for _, c := range backlog {
		sent, ok := resumed.Fresh(c)
		if !ok || holdsPersonalData(sent.State) != (c.State.CustomerID == "c-2") {
			t.Errorf("resumed, the change at %d (customer %s) is sent as %+v (%v); want it sent, erased only for c-1", c.Position, c.State.CustomerID, sent, ok)
		}
	}
}

// An erasure's changes share its position. Resuming from a position whose
// wanted changes are several, a subscription gets all of them again (its
// watcher may have been cut off part-way); from one with a single wanted
// change, which its watcher saw, not that one. Resuming from the newest
// position is no exception.
func TestFeedResumeRepeatsAPositionsSeveralChanges(t *testing.T) {
	f := NewFeed(10)
	f.start(10, false)
	f.publish(13, []Change{
		{Position: 11, OrderID: "a"},
		{Position: 12, OrderID: "a"}, {Position: 12, OrderID: "b"}, {Position: 12, OrderID: "c"},
		{Position: 13, OrderID: "b"},
	}, nil)
	onlyBC := func(c *Change) bool { return c.OrderID != "a" }
	for _, tc := range []struct {
		order string
		match func(*Change) bool
		after uint64
		want  []uint64
	}{
		{"", nil, 11, []uint64{12, 12, 12, 13}},
		{"", nil, 12, []uint64{12, 12, 12, 13}},
		{"", onlyBC, 12, []uint64{12, 12, 13}},
		{"", func(c *Change) bool { return c.OrderID == "a" }, 12, nil},
		{"b", nil, 12, []uint64{13}},
		{"", nil, 13, nil},
	} {
		_, _, backlog, ok := f.Subscribe(tc.order, tc.match, 8, tc.after)
		if !ok || !slices.Equal(positions(backlog), tc.want) {
			t.Errorf("order %q, after %d: backlog %v (ok %v), want %v", tc.order, tc.after, positions(backlog), ok, tc.want)
		}
	}
	f.publish(14, []Change{{Position: 14, OrderID: "a"}, {Position: 14, OrderID: "b"}}, nil)
	if _, _, backlog, _ := f.Subscribe("", nil, 8, 14); !slices.Equal(positions(backlog), []uint64{14, 14}) {
		t.Errorf("after the newest position, 14: backlog %v, want its two changes", positions(backlog))
	}
}

// A watcher resuming at the history's floor, where the history keeps only
// the rest of an erasure's group (its first change dropped), is told the
// history does not reach back that far: it may have seen the dropped change
// and not the rest. Before, the rest was skipped without a word, and the
// watcher kept those orders' addresses in the clear.
func TestResumeAtTheFloorOfAPartGroupIsIncomplete(t *testing.T) {
	f := NewFeed(3)
	f.start(4, false)
	erased := order.State{CustomerID: "c", Shipping: &order.Address{Erased: true}}
	f.publish(5, []Change{{Position: 5, OrderID: "a", State: erased}, {Position: 5, OrderID: "b", State: erased}, {Position: 5, OrderID: "c", State: erased}}, nil)
	f.publish(6, []Change{{Position: 6, OrderID: "d", State: order.State{CustomerID: "x"}}}, nil) // drops a@5
	s, _, backlog, ok := f.Subscribe("", nil, 8, 5)
	defer s.Close()
	if ok {
		t.Fatalf("resume from the floor 5 with part of its group dropped: ok, backlog %v; want not ok", changesOf(backlog))
	}
	// Above the floor the history is whole.
	s2, _, backlog, ok := f.Subscribe("", nil, 8, 6)
	defer s2.Close()
	if !ok || len(backlog) != 0 {
		t.Fatalf("resume from 6: ok %v, %d changes; want ok and none", ok, len(backlog))
	}
}

// A watcher by match resuming at the floor is told the history does not
// reach back that far when the group's dropped part may hold a change it
// wanted: whether the changes kept at the floor are ones it wants or not,
// and when the whole group was dropped.
func TestResumeAtTheFloorOfADroppedGroupIsIncompleteForAFilteredWatch(t *testing.T) {
	placed := order.State{CustomerID: "c", Status: order.StatusPlaced, Shipping: &order.Address{Erased: true}}
	shipped := order.State{CustomerID: "c", Status: order.StatusShipped, Shipping: &order.Address{Erased: true}}
	other := order.State{CustomerID: "x", Status: order.StatusDraft}
	placedOnly := func(c *Change) bool { return c.State.Status == order.StatusPlaced || c.Prev == order.StatusPlaced }
	// The erasure of customer c at 5 changes a and b (placed) and z
	// (shipped); the watcher of placed orders saw a@5 and was cut off.
	erasure := []Change{
		{Position: 5, OrderID: "a", State: placed, Prev: order.StatusPlaced},
		{Position: 5, OrderID: "b", State: placed, Prev: order.StatusPlaced},
		{Position: 5, OrderID: "z", State: shipped, Prev: order.StatusShipped},
	}
	for _, tc := range []struct {
		name  string
		later []uint64 // positions of one-change commits after the erasure
	}{
		{"an unwanted change of the group kept", []uint64{6, 7}}, // drops a@5, b@5; z@5 kept
		{"the whole group dropped", []uint64{6, 7, 8}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFeed(3)
			f.start(4, false)
			f.publish(5, erasure, nil)
			for _, p := range tc.later {
				f.publish(p, []Change{{Position: p, OrderID: fmt.Sprint("o", p), State: other}}, nil)
			}
			s, _, backlog, ok := f.Subscribe("", placedOnly, 8, 5)
			defer s.Close()
			if ok {
				t.Fatalf("resume from the floor 5, b@5 dropped unseen: ok, backlog %v; want not ok", changesOf(backlog))
			}
		})
	}
	// A one-change commit dropped whole: its watcher saw it.
	f := NewFeed(1)
	f.start(4, false)
	f.publish(5, []Change{{Position: 5, OrderID: "a", State: placed}}, nil)
	f.publish(6, []Change{{Position: 6, OrderID: "b", State: placed}}, nil)
	s, _, backlog, ok := f.Subscribe("", placedOnly, 8, 5)
	defer s.Close()
	if !ok || len(backlog) != 1 || backlog[0].OrderID != "b" {
		t.Fatalf("resume from the floor of a single change: ok %v, backlog %d changes; want ok and b@6", ok, len(backlog))
	}
}

// changesOf names each change as order@position.
func changesOf(cs []*Change) []string {
	var got []string
	for _, c := range cs {
		got = append(got, fmt.Sprint(c.OrderID, "@", c.Position))
	}
	return got
}

// A feed stopped with its runner ends every subscription with
// ErrFeedStopped, telling each the position it published up to when all
// the subscription wants up to there is buffered for it (a watcher of some
// orders resumes from there, below which a restarted feed keeps nothing),
// and not when changes that did not fit its buffer were dropped with it.
// A subscription made while stopped ends at once; a start takes them again.
func TestFeedStopTellsWhereToResume(t *testing.T) {
	f := NewFeed(100)
	f.start(10, false)
	quiet, _, _, _ := f.Subscribe("", func(c *Change) bool { return c.OrderID == "b" }, 8, math.MaxUint64)
	small, _, _, _ := f.Subscribe("", nil, 2, math.MaxUint64)
	if _, ok := quiet.StoppedAt(); ok {
		t.Fatal("StoppedAt ok before the feed stopped")
	}
	f.publish(16, changes(11, 16, "a"), nil)
	f.stop()
	for name, s := range map[string]*Subscription{"quiet": quiet, "small": small} {
		if !errors.Is(s.Err(), ErrFeedStopped) {
			t.Fatalf("%s after stop: %v, want ErrFeedStopped", name, s.Err())
		}
	}
	if at, ok := quiet.StoppedAt(); !ok || at != 16 {
		t.Fatalf("quiet watcher stopped at %d (ok %v), want 16", at, ok)
	}
	if at, ok := small.StoppedAt(); ok {
		t.Fatalf("watcher whose buffer held 2 of 6 changes told to resume from %d", at)
	}
	late, pub, _, _ := f.Subscribe("", nil, 8, math.MaxUint64)
	if at, ok := late.StoppedAt(); pub != 16 || !ok || at != 16 {
		t.Fatalf("subscription made while stopped: published %d, stopped at %d (ok %v, err %v)", pub, at, ok, late.Err())
	}
	f.start(16, false)
	again, _, _, _ := f.Subscribe("", nil, 8, math.MaxUint64)
	f.publish(17, changes(17, 17, "a"), nil)
	if again.Err() != nil || len(again.C()) != 1 {
		t.Fatalf("subscription after the feed started again: %d buffered, %v", len(again.C()), again.Err())
	}
}

// A watch resumed on a node whose runner has not started its feed yet
// (the watch reconnecting at once to a restarted node) is kept when the
// feed starts at a checkpoint it resumed at or before: from the
// checkpoint, where the node stopped, or past it, it misses nothing. It was
// ended with ErrFeedRestarted, and a watch of some orders told to list
// again. One resumed below the checkpoint, or one started before it
// (told position 0), is still ended.
func TestFeedStartKeepsWatchesResumedAtItsCheckpoint(t *testing.T) {
	f := NewFeed(100)
	at, _, _, ok := f.Subscribe("", nil, 8, 20)
	past, _, _, _ := f.Subscribe("", nil, 8, 22)
	below, _, _, _ := f.Subscribe("", nil, 8, 19)
	fresh, _, _, _ := f.Subscribe("", nil, 8, math.MaxUint64)
	if !ok {
		t.Fatal("resume before the start refused")
	}
	f.start(20, false)
	for name, s := range map[string]*Subscription{"below the checkpoint": below, "started before it": fresh} {
		if !errors.Is(s.Err(), ErrFeedRestarted) {
			t.Errorf("watch %s: %v, want ErrFeedRestarted", name, s.Err())
		}
	}
	f.publish(22, changes(21, 22, "a"), nil)
	f.publish(23, changes(23, 23, "a"), nil)
	for name, tc := range map[string]struct {
		s    *Subscription
		want []uint64
	}{
		"at the checkpoint": {at, []uint64{21, 22, 23}},
		// As any watch resumed ahead of the feed: its own last change
		// skipped, the ones before it left to its watcher, which sent them.
		"past it": {past, []uint64{21, 23}},
	} {
		var got []uint64
		for len(tc.s.C()) > 0 {
			got = append(got, (<-tc.s.C()).Position)
		}
		if tc.s.Err() != nil || !slices.Equal(got, tc.want) {
			t.Errorf("watch resumed %s: got %v (%v), want %v", name, got, tc.s.Err(), tc.want)
		}
	}
	// At a checkpoint that may hold a group (an erasure's), a watch by
	// match may have seen part of it, as Subscribe would say.
	g := NewFeed(100)
	byMatch, _, _, _ := g.Subscribe("", nil, 8, 20)
	one, _, _, _ := g.Subscribe("a", nil, 8, 20)
	g.start(20, true)
	if !errors.Is(byMatch.Err(), ErrFeedRestarted) || one.Err() != nil {
		t.Errorf("at a checkpoint of several changes: watch by match %v, want ErrFeedRestarted; watch of one order %v, want none", byMatch.Err(), one.Err())
	}
}

// Caught tells the position a subscription has taken every change it
// wants up to: none while one waits in its buffer, or for room there.
func TestFeedCaughtOnlyWithNothingUnread(t *testing.T) {
	f := NewFeed(100)
	f.start(10, false)
	a := func(c *Change) bool { return c.OrderID == "a" }
	s, _, _, _ := f.Subscribe("", a, 2, math.MaxUint64)
	small, _, _, _ := f.Subscribe("", a, 1, math.MaxUint64)
	if at, ok := s.Caught(); !ok || at != 10 {
		t.Fatalf("new subscription: caught at %d (%v), want 10", at, ok)
	}
	f.publish(12, []Change{{Position: 11, OrderID: "a"}, {Position: 12, OrderID: "a"}}, nil)
	if _, ok := s.Caught(); ok {
		t.Fatal("caught with changes in the buffer")
	}
	<-small.C()
	if _, ok := small.Caught(); ok {
		t.Fatal("caught with a change waiting for room in the buffer")
	}
	<-s.C()
	<-s.C()
	f.publish(13, changes(13, 13, "b"), nil)
	if at, ok := s.Caught(); !ok || at != 13 {
		t.Fatalf("every change taken, others' published after: caught at %d (%v), want 13", at, ok)
	}
	s.Close()
	if _, ok := s.Caught(); ok {
		t.Fatal("caught once closed")
	}
}
