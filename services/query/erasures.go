package query

import (
	"bytes"
	"context"
	"slices"
	"sort"
	"sync"

	"github.com/orderstream/orderstream/api/convert"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
)

// erasures is the customers' subject as this service last read it, by
// customer, for the watches that resume through the log. Every
// customer's erasure is recorded on that one subject, and a resume folds
// in only its order's customer's: read for each resume from the order's
// creation, the subject cost every erasure recorded since, on every
// resume, 116–227 ms each at 10,000 erasures
// (BenchmarkWatchOrderResumedThroughTheLog). Read once, then only what
// follows, a resume costs the erasures recorded since the last read (one
// question to the leader when there are none: 0.5–1.5 ms a resume while
// they are held). It holds the erasures after the oldest creation
// a resume asked about; a resume of an older order reads the subject
// again from that order's creation, as every resume did before. It holds
// at most maxHeldErasures, about a customer id and a small event each:
// past that it lets go of them all, and the next resume reads from its
// order's creation again.
type erasures struct {
	mu sync.Mutex
	// read: the subject was read after position after, up to last.
	read        bool
	after, last uint64
	// byCustomer holds each customer's erasures, in log order, with what
	// projections.HistoryChanges reads of them.
	byCustomer map[string][]eventstore.Recorded
	held       int // the erasures byCustomer holds
	// filling, when not nil, is the read of the whole subject in
	// flight: resumes that would read it too (on an empty cache, as
	// every watch comes back after a restart) wait for it rather than
	// each read it all.
	filling *fill
}

// maxHeldErasures bounds the erasures a query service holds for resumes
// (a few MiB): a log with more of them after the oldest order resumed
// costs each resume a read of them, not memory without end.
var maxHeldErasures = 1 << 16

// of returns the erasures of customerID recorded after position after, in
// log order, having read from h what was recorded since the last read.
// Every call reads: h asks the stream's leader, so the answer holds every
// erasure acknowledged before the call, which a resume makes after reading
// its order's own events (WatchOrder relies on that order). The read is
// made outside the lock: resumes do not wait on one another's reads (a
// leader's answer can take seconds during an election), and what each
// read adds is merged once it is back.
func (e *erasures) of(ctx context.Context, h History, customerID string, after uint64) (_ []eventstore.Recorded, err error) {
	e.mu.Lock()
	whole := !e.read || after < e.after
	for whole && e.filling != nil && e.filling.after <= after {
		f := e.filling
		e.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		e.mu.Lock()
		if whole = !e.read || after < e.after; whole && !f.left {
			// That read failed, or held more than the cache keeps:
			// this one reads by itself, beside the others that
			// waited, rather than each after the one before.
			e.mu.Unlock()
			return e.readSubject(ctx, h, customerID, after, after, true, nil)
		}
		// Its caller left: this one takes its place, or waits for the
		// one that did.
	}
	from := e.last
	var out []eventstore.Recorded
	if whole {
		from = after
		f := &fill{after: after, done: make(chan struct{})}
		e.filling = f
		defer func() {
			f.left = err != nil && ctx.Err() != nil
			e.mu.Lock()
			if e.filling == f {
				e.filling = nil
			}
			e.mu.Unlock()
			close(f.done)
		}()
	} else {
		// What the cache holds covers (after, from]; the read adds
		// what follows.
		all := e.byCustomer[customerID]
		i := sort.Search(len(all), func(i int) bool { return all[i].Position > after })
		out = slices.Clone(all[i:])
	}
	e.mu.Unlock()
	return e.readSubject(ctx, h, customerID, after, from, whole, out)
}

// fill is a read of the whole subject in flight, from position after.
type fill struct {
	after uint64
	done  chan struct{} // closed once it is merged or failed
	// left: it failed because its caller left (its context ended), no
	// fault of the log's; set before done is closed.
	left bool
}

// readSubject reads the customers' subject after from (after itself when whole),
// merges what it found into the cache, and returns out with the erasures
// of customerID after position after that it found.
func (e *erasures) readSubject(ctx context.Context, h History, customerID string, after, from uint64, whole bool, out []eventstore.Recorded) ([]eventstore.Recorded, error) {
	recs, err := h.LoadLatestAfter(ctx, order.CustomersSubjectID, from)
	if err != nil {
		return nil, err
	}
	read := make([]forgotten, 0, len(recs))
	for _, r := range recs {
		// An event that does not decode, or is no erasure, changes no
		// order: HistoryChanges skips it.
		ev, err := convert.DecodeEvent(r.Type, r.Data)
		f, ok := ev.(order.CustomerForgotten)
		if err != nil || !ok {
			continue
		}
		kept := eventstore.Recorded{OrderID: r.OrderID, Position: r.Position, Version: r.Version, Type: r.Type, Data: bytes.Clone(r.Data),
			Meta: eventstore.Metadata{Actor: r.Meta.Actor}}
		read = append(read, forgotten{f.CustomerID, kept})
		if f.CustomerID == customerID && r.Position > after {
			out = append(out, kept)
		}
	}
	last := from
	if len(recs) > 0 {
		last = max(last, recs[len(recs)-1].Position)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.merge(from, last, whole, read)
	return out, nil
}

// forgotten is one erasure read, with its customer.
type forgotten struct {
	customerID string
	rec        eventstore.Recorded
}

// merge adds to the cache what a read of (from, last] found, the erasures
// in read, unless the cache changed so that they would leave a hole in
// it: a read of the whole subject from an older order's creation, or the
// cache let go of meanwhile. A read from an order's creation (whole)
// replaces a cache that starts later.
func (e *erasures) merge(from, last uint64, whole bool, read []forgotten) {
	switch {
	case whole && (!e.read || from < e.after):
		e.read, e.after, e.last, e.byCustomer, e.held = true, from, from, map[string][]eventstore.Recorded{}, 0
	case !e.read || from > e.last:
		return // the cache is gone, or behind what this read started from
	}
	for _, f := range read {
		if f.rec.Position <= e.last {
			continue // another read put it there
		}
		e.byCustomer[f.customerID] = append(e.byCustomer[f.customerID], f.rec)
		e.held++
	}
	e.last = max(e.last, last)
	if e.held > maxHeldErasures {
		e.read, e.byCustomer, e.held = false, nil, 0
	}
}
