package payments

import (
	"sync"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/internal/bounded"
	"github.com/orderstream/orderstream/order"
)

// DefaultStates is how many orders' states a Manager keeps by default
// (WithStates).
const DefaultStates = 4096

// states keeps the state of the orders whose every event the manager saw
// delivered, folded up to the last one, so that a job reads from the log
// only what followed it (LoadLatestAfter) instead of the order's whole
// history.
//
// Why it pays: the subscription delivers every event of the log to the
// manager anyway, and the server finds an order's events by walking every
// message stored between them, so reading the whole history of an order
// placed a while after it was created cost ordersd's embedded server about
// a third of a millisecond of CPU per job under the mixed load (0.48 s of
// direct gets fewer in 10 s of 1,400 requests/s, 139 of them placements a
// second; BENCHMARKS.md). The event store now asks for the events of an
// order it appended or loaded at their positions, without that walk
// (eventstore's trails), but a manager running apart from the command
// role has no such positions, and a whole history is still more to read.
//
// Why it is safe: a job's decision still rests on the order as the stream
// leader has it, not on what was delivered. LoadLatestAfter asks the
// leader for the order's last event and returns whatever followed the
// folded state, which the job folds in too. A state is kept only while it
// is the fold of the order's whole history: the order's first event
// starts it, and each event extends it only when it is the one after the
// last folded (by version). Anything else (an order whose start this
// manager never saw, two of one order's events handled out of order by the
// workers, a history written before versions were recorded) drops the
// order's state, and its next job reads the whole history as before.
type states struct {
	mu  sync.Mutex
	max int
	m   map[string]folded
}

// folded is an order's state after its event at position, the order's
// version-th: st folds the events before pending, which are folded in
// when the state is asked for (get). Most orders the manager sees are
// never charged or refunded (an order created and never placed, say), and
// decoding every event as it was delivered cost 2.8% of ordersd's CPU at
// CreateOrder's peak with all roles.
type folded struct {
	st       view
	pending  []eventstore.Recorded
	version  uint64
	position uint64
}

func newStates(n int) *states {
	return &states{max: n, m: make(map[string]folded)}
}

// observe adds a delivered event to its order's state, or drops the state
// when the event cannot extend it (see states). A delivery of an event
// already added (a redelivery) changes nothing.
func (c *states) observe(rec eventstore.Recorded) {
	if c.max == 0 || rec.OrderID == order.CustomersSubjectID {
		// The customers' subject is no order: no job asks for its
		// state, and its erasures would pile up undecoded for ever.
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.m[rec.OrderID]
	switch {
	case ok && rec.Version != 0 && rec.Version <= f.version:
		return
	case rec.Version == 1:
		f = folded{}
	case !ok:
		return
	case rec.Version != f.version+1:
		delete(c.m, rec.OrderID)
		return
	}
	f.pending, f.version, f.position = append(f.pending, rec), rec.Version, rec.Position
	bounded.Put(c.m, rec.OrderID, f, c.max)
}

// get returns the order's folded state and the position of the last event
// in it; an event that cannot be decoded drops the state.
func (c *states) get(orderID string) (view, uint64, bool) {
	if c.max == 0 {
		return view{}, 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.m[orderID]
	if !ok || len(f.pending) == 0 {
		return f.st, f.position, ok
	}
	for _, rec := range f.pending {
		var err error
		if f.st, err = f.st.fold(rec); err != nil {
			delete(c.m, orderID)
			return view{}, 0, false
		}
	}
	f.pending = nil
	c.m[orderID] = f
	return f.st, f.position, true
}
