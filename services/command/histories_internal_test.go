package command

import (
	"fmt"
	"testing"

	"github.com/orderstream/orderstream/eventstore"
)

// history returns n recorded events of one order, at positions from 1.
func history(orderID string, n int) []eventstore.Recorded {
	recs := make([]eventstore.Recorded, n)
	for i := range recs {
		recs[i] = eventstore.Recorded{OrderID: orderID, Position: uint64(i + 1), Version: uint64(i + 1), Type: "ItemAdded", Data: []byte("{}"),
			Meta: eventstore.Metadata{Hash: fmt.Sprint("hash", i), Actor: "someone"}}
	}
	return recs
}

// The cache holds at most its bound of orders however many are loaded,
// and no order longer than maxCachedEvents: a few huge orders or a scan
// of every order must not grow it without end.
func TestHistoriesAreBounded(t *testing.T) {
	const limit = 100
	h := newHistories(limit)
	for i := range 10 * limit {
		id := fmt.Sprint("o", i)
		h.loaded(id, history(id, 1+i%4))
		if n := len(h.m); n > limit {
			t.Fatalf("after %d orders the cache holds %d, bound %d", i+1, n, limit)
		}
		if _, ok := h.get(id); !ok {
			t.Fatalf("the history of %s, just loaded, was evicted to make room", id)
		}
	}
	h.loaded("long", history("long", maxCachedEvents+1))
	if _, ok := h.get("long"); ok {
		t.Errorf("an order of %d events was cached", maxCachedEvents+1)
	}
	full := history("full", maxCachedEvents)
	h.loaded("full", full)
	h.appended("full", full, []eventstore.EventData{{Type: "ItemAdded", Data: []byte("{}")}}, eventstore.AppendResult{Position: 99, Version: maxCachedEvents + 1})
	if _, ok := h.get("full"); ok {
		t.Errorf("an append made a cached order %d events long and it stayed", maxCachedEvents+1)
	}
}

// A cached history keeps only what a command reads: the hash of its last
// event (the next link of the chain) and none of the others', and no
// actor or other metadata of the message.
func TestCachedHistoryIsCompacted(t *testing.T) {
	h := newHistories(10)
	recs := h.loaded("o", history("o", 3))
	h.appended("o", recs, []eventstore.EventData{{Type: "ItemAdded", Data: []byte("{}"), Meta: eventstore.Metadata{Hash: "new", Actor: "someone"}}},
		eventstore.AppendResult{Position: 4, Version: 4})
	got, ok := h.get("o")
	if !ok || len(got) != 4 {
		t.Fatalf("cached %d events (%v), want 4", len(got), ok)
	}
	for i, r := range got {
		wantHash := ""
		if i == len(got)-1 {
			wantHash = "new"
		}
		if r.Meta.Hash != wantHash || r.Meta.Actor != "" {
			t.Errorf("event %d: hash %q actor %q, want hash %q and no actor", i, r.Meta.Hash, r.Meta.Actor, wantHash)
		}
	}
}
