package eventstore_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
)

// directGets records the direct gets of the ORDERS stream that reach the
// server, as a second subscriber to their subject sees them.
type directGets struct {
	ch chan *nats.Msg
}

type directGet struct {
	Seq     uint64 `json:"seq"`
	NextFor string `json:"next_by_subj"`
	Batch   int    `json:"batch"`
}

func watchDirectGets(t *testing.T, nc *nats.Conn) *directGets {
	t.Helper()
	d := &directGets{ch: make(chan *nats.Msg, 1<<16)}
	// A channel subscription: its messages are in the channel before the
	// read loop handles a later PONG, so after a Flush every request the
	// server routed before it is there.
	sub, err := nc.ChanSubscribe("$JS.API.DIRECT.GET."+eventstore.DefaultStreamName, d.ch)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return d
}

// take returns the requests seen since the last take, once the server has
// routed every request sent before it (the flush is a round trip on the
// watching connection, behind the store's requests on the server).
func (d *directGets) take(t *testing.T, nc *nats.Conn) []directGet {
	t.Helper()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var reqs []directGet
	for {
		select {
		case m := <-d.ch:
			var r directGet
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Fatalf("direct get request %q: %v", m.Data, err)
			}
			reqs = append(reqs, r)
		default:
			return reqs
		}
	}
}

// twoStores returns the environment's store and another one on its stream,
// as another process would have.
func twoStores(t *testing.T, opts ...eventstore.Option) (*env, *eventstore.Store) {
	t.Helper()
	e := newEnv(t, opts...)
	other, err := eventstore.New(t.Context(), e.js, append([]eventstore.Option{eventstore.WithStorage(jetstream.MemoryStorage)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return e, other
}

// spreadOrder appends three events of order id with other orders' events
// between them, as a busy log holds them, and returns the three positions.
func spreadOrder(t *testing.T, s *eventstore.Store, id string) []uint64 {
	t.Helper()
	var pos []uint64
	for v := range uint64(3) {
		if v > 0 {
			for i := range 20 {
				estest.MustAppend(t, s, fmt.Sprintf("%s-other-%d-%d", id, v, i), 0, estest.Event("OrderCreated", "x", ""))
			}
		}
		pos = append(pos, estest.MustAppend(t, s, id, v, estest.Event("E", fmt.Sprint(v), "")).Position)
	}
	return pos
}

// A store asks for the events of an order it appended or loaded each at
// its position, and reads by the order's subject only after the last of
// them: never from a position at or before one of its events, from which
// the server walks every message up to the next. What follows the last is
// asked for with one plain get, never a batched one: to answer a batch,
// the server counts what it has left, walking the messages of a block.
func TestLoadAsksForKnownEventsByPosition(t *testing.T) {
	// The other store has seen nothing of the order: it reads by subject,
	// and learns where the events are.
	e, other := twoStores(t)
	ctx, s := t.Context(), e.store
	pos := spreadOrder(t, s, "o-1")
	watcher, _ := estest.Connect(t, e.srv)
	gets := watchDirectGets(t, watcher)
	for _, c := range []struct {
		name  string
		s     *eventstore.Store
		after uint64
	}{
		{"appended", s, 0},
		{"appended, after the first", s, pos[0]},
		{"loaded once before", other, 0},
		{"loaded once before, after the first", other, pos[0]},
	} {
		if c.s == other && c.after == 0 {
			estest.MustLoad(t, other, "o-1")
			gets.take(t, watcher)
		}
		recs, err := c.s.LoadAfter(ctx, "o-1", c.after)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var got []uint64
		for _, r := range recs {
			got = append(got, r.Position)
		}
		want := slices.DeleteFunc(slices.Clone(pos), func(p uint64) bool { return p <= c.after })
		if !slices.Equal(got, want) {
			t.Fatalf("%s: positions %v, want %v", c.name, got, want)
		}
		for _, r := range gets.take(t, watcher) {
			if r.NextFor != s.Subject("o-1") {
				continue
			}
			// A single get answers the event at its position, or the
			// first after the last known one.
			if r.Batch > 0 || !slices.Contains(want, r.Seq) && r.Seq != pos[2]+1 {
				t.Errorf("%s: a get of %d from position %d, neither an event of the order read alone nor one plain get after its last (%v)", c.name, r.Batch, r.Seq, pos)
			}
		}
	}
}

// An order with more events than a load asks for by position: the first
// are asked for at their positions and the rest with a batched get after
// them, sent with those gets. No plain get asks whether anything follows
// the gets: the trail says something does.
func TestLoadOfALongTrailAsksForTheRestWithItsGets(t *testing.T) {
	e := newEnv(t)
	ctx, s := t.Context(), e.store
	const n = 20 // more than a load asks for by position (16)
	var pos []uint64
	for v := range uint64(n) {
		pos = append(pos, estest.MustAppend(t, s, "o-1", v, estest.Event("E", fmt.Sprint(v), "")).Position)
		estest.MustAppend(t, s, fmt.Sprintf("other-%d", v), 0, estest.Event("OrderCreated", "x", ""))
	}
	watcher, _ := estest.Connect(t, e.srv)
	gets := watchDirectGets(t, watcher)
	recs, err := s.LoadAfter(ctx, "o-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, r := range recs {
		got = append(got, r.Position)
	}
	if !slices.Equal(got, pos) {
		t.Fatalf("positions %v, want %v", got, pos)
	}
	byPosition := pos[:16]
	batched := false
	for _, r := range gets.take(t, watcher) {
		if r.NextFor != s.Subject("o-1") {
			continue
		}
		switch {
		case r.Batch == 0 && slices.Contains(byPosition, r.Seq):
		case r.Batch > 0 && r.Seq == byPosition[15]+1:
			batched = true
		default:
			t.Errorf("a get of %d from position %d, neither one of the first 16 events read alone nor a batch after them (%v)", r.Batch, r.Seq, pos)
		}
	}
	if !batched {
		t.Errorf("no batched get after the first 16 events")
	}
}

// What the trail does not know (events another process appended, or
// appended by this one after an event it never saw) is read after it,
// and a load from any position answers every event after it, in order.
func TestLoadReadsBeyondTheTrail(t *testing.T) {
	e, other := twoStores(t)
	ctx, s := t.Context(), e.store
	pos := spreadOrder(t, s, "o-1")
	pos = append(pos, estest.MustAppend(t, other, "o-1", 3, estest.Event("E", "3", ""), estest.Event("E", "4", "")).Position-1)
	pos = append(pos, pos[3]+1)
	pos = append(pos, estest.MustAppend(t, s, "o-1", 5, estest.Event("E", "5", "")).Position)
	for _, after := range append([]uint64{0}, pos...) {
		recs, err := s.LoadAfter(ctx, "o-1", after)
		if err != nil {
			t.Fatal(err)
		}
		want := slices.DeleteFunc(slices.Clone(pos), func(p uint64) bool { return p <= after })
		if len(recs) != len(want) {
			t.Fatalf("after %d: %d events, want %d", after, len(recs), len(want))
		}
		for i, r := range recs {
			v := uint64(len(pos)-len(want)+i) + 1
			if r.Position != want[i] || r.Version != v || string(r.Data) != fmt.Sprint(v-1) {
				t.Errorf("after %d: event %d at %d, version %d, %q; want %d, version %d, %q", after, i, r.Position, r.Version, r.Data, want[i], v, fmt.Sprint(v-1))
			}
		}
	}
}

// A trail that is wrong (positions of other orders' events, of no event,
// out of place, or an append whose events were taken to lie side by side
// and do not) costs a load its gets by position, never its answer: the
// load reads the order by subject instead and keeps the positions it read.
func TestWrongTrailIsReadPast(t *testing.T) {
	ctx, s := t.Context(), newEnv(t).store
	pos := spreadOrder(t, s, "o-1")
	head := pos[2] + 1
	estest.MustAppend(t, s, "o-2", 0, estest.Event("OrderCreated", "x", ""))
	for _, trail := range [][]uint64{
		{pos[0] + 1, pos[1], pos[2]},     // another order's event first
		{pos[0], pos[1] - 1, pos[2]},     // the order's next event lies after it
		{pos[0], pos[1], head + 100},     // no event at all
		{pos[0], pos[2], pos[1]},         // out of order
		{pos[0], pos[0] + 1, pos[0] + 2}, // an append taken for side by side
		{pos[1], pos[2]},                 // a second event as the first
	} {
		eventstore.SetTrail(s, "o-1", trail)
		recs, err := s.Load(ctx, "o-1")
		if err != nil {
			t.Fatalf("trail %v: %v", trail, err)
		}
		var got []uint64
		for i, r := range recs {
			got = append(got, r.Position)
			if r.Version != uint64(i)+1 || string(r.Data) != fmt.Sprint(i) {
				t.Errorf("trail %v: event %d is version %d, %q", trail, i, r.Version, r.Data)
			}
		}
		if !slices.Equal(got, pos) {
			t.Errorf("trail %v: loaded positions %v, want %v", trail, got, pos)
		}
		if tr := eventstore.Trail(s, "o-1"); !slices.Equal(tr, pos) {
			t.Errorf("trail %v: after the load the trail is %v, want %v", trail, tr, pos)
		}
	}
}

// On a stream that still allows deletes, an event deleted since the trail
// took its position is answered by the order's next event, which the load
// tells apart: it answers the order as it is, and the trail keeps the
// positions the load read.
func TestTrailOverADeletedEvent(t *testing.T) {
	e := newEnv(t, eventstore.WithMutableStream())
	ctx, s := t.Context(), e.store
	pos := spreadOrder(t, s, "o-1")
	st, err := e.js.Stream(ctx, s.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(ctx, pos[1]); err != nil {
		t.Fatal(err)
	}
	for _, after := range []uint64{0, pos[0]} {
		eventstore.SetTrail(s, "o-1", pos)
		recs, err := s.LoadAfter(ctx, "o-1", after)
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		for _, r := range recs {
			got = append(got, r.Position)
		}
		want := slices.DeleteFunc([]uint64{pos[0], pos[2]}, func(p uint64) bool { return p <= after })
		if !slices.Equal(got, want) {
			t.Errorf("after %d: loaded %v, want %v", after, got, want)
		}
		if tr := eventstore.Trail(s, "o-1"); !slices.Equal(tr, pos[:1]) {
			t.Errorf("after %d: trail %v, want %v (the event at version 2 is gone)", after, tr, pos[:1])
		}
	}
}
