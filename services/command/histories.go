package command

import (
	"bytes"
	"slices"
	"sync"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/internal/bounded"
)

// DefaultHistories is how many orders' histories a Service keeps by
// default (WithHistories).
const DefaultHistories = 4096

// maxCachedEvents bounds the history of one cached order: a longer one is
// read from the log each time, so that a few huge orders cannot fill the
// cache's memory.
const maxCachedEvents = 64

// histories keeps the histories of the orders this service loaded or
// appended to last, so that the next command on one of them is decided
// without reading the log.
//
// Why that is safe: a cached history is at worst stale, like one read from
// a lagging replica, and the command path already copes with those. The
// append carries the revision the decision was made on, so the server
// refuses it if another writer got there first; and an answer drawn from
// the state alone (a rejection, a no-op) is never given from a cached or
// replica read but read again from the stream leader (call.turn). What the
// cache holds is the stored events, sealed as they are in the log: each
// command still opens them through the keyring, so a forgotten customer's
// data is as unreadable from here as from the log.
//
// Why it pays: a load is a round trip to the server and a decode of every
// event; and for an order the store has no trail of (eventstore's
// trailAfter), JetStream finds each next event by walking the messages
// after the previous one in its message block, which costs more the more
// other orders were written between its events.
type histories struct {
	mu  sync.Mutex
	max int
	m   map[string][]eventstore.Recorded
}

func newHistories(n int) *histories {
	return &histories{max: n, m: make(map[string][]eventstore.Recorded)}
}

// get returns the order's cached history. The slice is shared: callers
// only read it.
func (h *histories) get(orderID string) ([]eventstore.Recorded, bool) {
	if h.max == 0 {
		return nil, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	recs, ok := h.m[orderID]
	return recs, ok
}

// fits reports whether a history of n events is cached at all.
func (h *histories) fits(n int) bool {
	return h.max > 0 && n > 0 && n <= maxCachedEvents
}

// put caches recs (compacted, and fits) as the order's history unless it
// is older than the one cached (a slow read finishing after an append).
func (h *histories) put(orderID string, recs []eventstore.Recorded) {
	h.mu.Lock()
	defer h.mu.Unlock()
	old, ok := h.m[orderID]
	if ok && old[len(old)-1].Position > recs[len(recs)-1].Position {
		return
	}
	bounded.Put(h.m, orderID, recs, h.max)
}

// compact copies what a command reads of an order's history: an event's
// position, version, type, payload, request id, fingerprint and time, and
// the last event's hash. A history read from the log shares its payloads
// with whole NATS messages and carries metadata no decision reads: kept as
// read, an order of four events held about 7 KB, compacted about 4 KB
// (BenchmarkHistoriesMemory).
func compact(recs []eventstore.Recorded) []eventstore.Recorded {
	out := make([]eventstore.Recorded, len(recs))
	for i, r := range recs {
		r.Data = bytes.Clone(r.Data)
		out[i] = slim(r, i == len(recs)-1)
	}
	return out
}

// slim keeps of r what a command reads; the hash only when r is the last
// event (the next link of the chain).
func slim(r eventstore.Recorded, last bool) eventstore.Recorded {
	s := eventstore.Recorded{OrderID: r.OrderID, Position: r.Position, Version: r.Version, Type: r.Type, Data: r.Data,
		Meta: eventstore.Metadata{RequestID: r.Meta.RequestID, RequestFingerprint: r.Meta.RequestFingerprint, OccurredAt: r.Meta.OccurredAt}}
	if last {
		s.Meta.Hash = r.Meta.Hash
	}
	return s
}

// loaded caches the order's history as just read from the log, and returns
// it as cached (compacted) when it is.
func (h *histories) loaded(orderID string, recs []eventstore.Recorded) []eventstore.Recorded {
	if !h.fits(len(recs)) {
		h.drop(orderID)
		return recs
	}
	recs = compact(recs)
	h.put(orderID, recs)
	return recs
}

// appended caches the order's history after an append of events at the
// end of recs (compacted), which the store acknowledged with res. Only a
// one-event append is added: the positions of a batch's other events are
// not in res.
func (h *histories) appended(orderID string, recs []eventstore.Recorded, events []eventstore.EventData, res eventstore.AppendResult) {
	if len(events) != 1 || !h.fits(len(recs)+1) {
		h.drop(orderID)
		return
	}
	e := events[0]
	recs = append(slices.Clip(recs), slim(eventstore.Recorded{OrderID: orderID, Position: res.Position, Version: res.Version, Type: e.Type, Data: e.Data, Meta: e.Meta}, true))
	if n := len(recs); n > 1 {
		recs[n-2] = slim(recs[n-2], false)
	}
	h.put(orderID, recs)
}

// drop forgets the order's history.
func (h *histories) drop(orderID string) {
	if h.max == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.m, orderID)
}
