package query

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
)

// customersSubject is the customers' subject as History reads it, each
// read's position kept.
type customersSubject struct {
	recs   []eventstore.Recorded
	afters []uint64
}

func (c *customersSubject) LoadLatest(ctx context.Context, id string) ([]eventstore.Recorded, error) {
	return c.LoadLatestAfter(ctx, id, 0)
}

func (c *customersSubject) LoadLatestAfter(_ context.Context, _ string, after uint64) ([]eventstore.Recorded, error) {
	c.afters = append(c.afters, after)
	var out []eventstore.Recorded
	for _, r := range c.recs {
		if r.Position > after {
			out = append(out, r)
		}
	}
	return out, nil
}

func (c *customersSubject) forget(t *testing.T, customerID string, position uint64) {
	t.Helper()
	typ, data, err := convert.EncodeEvent(order.CustomerForgotten{CustomerID: customerID})
	if err != nil {
		t.Fatal(err)
	}
	c.recs = append(c.recs, eventstore.Recorded{OrderID: order.CustomersSubjectID, Position: position, Type: typ, Data: data})
}

// More erasures than maxHeldErasures are not held: the resume that read
// them is answered, and the next reads from its order's creation again.
// A service held every erasure read since the oldest order resumed.
func TestErasuresPastTheBoundAreNotHeld(t *testing.T) {
	was := maxHeldErasures
	maxHeldErasures = 2
	t.Cleanup(func() { maxHeldErasures = was })
	h := &customersSubject{}
	for i, c := range []string{"a", "b", "c"} {
		h.forget(t, c, uint64(2+i))
	}
	var e erasures
	got, err := e.of(t.Context(), h, "c", 1)
	if err != nil || len(got) != 1 || got[0].Position != 4 {
		t.Fatalf("c's erasures after 1: %v, %v; want the one at 4", got, err)
	}
	if e.byCustomer != nil || e.held != 0 {
		t.Fatalf("%d erasures held past a bound of %d", e.held, maxHeldErasures)
	}
	h.forget(t, "a", 5)
	got, err = e.of(t.Context(), h, "a", 1)
	if err != nil || len(got) != 2 || got[0].Position != 2 || got[1].Position != 5 {
		t.Fatalf("a's erasures after 1: %v, %v; want those at 2 and 5", got, err)
	}
	if h.afters[1] != 1 {
		t.Fatalf("the resume after letting go read the subject after %d, want after its order's creation (1)", h.afters[1])
	}
}

// blockingSubject is customersSubject whose first read waits until
// released, as a leader's answer during an election does.
type blockingSubject struct {
	customersSubject
	entered, release chan struct{}
	once             sync.Once
}

func (b *blockingSubject) LoadLatestAfter(ctx context.Context, id string, after uint64) ([]eventstore.Recorded, error) {
	first := false
	b.once.Do(func() { first = true })
	if first {
		close(b.entered)
		<-b.release
	}
	return b.customersSubject.LoadLatestAfter(ctx, id, after)
}

// A resume does not wait for another's read of the log: each held the
// lock across its read, and every resume on the node queued behind one
// slow answer (and did not leave when its caller did).
func TestResumesDoNotWaitForEachOthersRead(t *testing.T) {
	h := &blockingSubject{entered: make(chan struct{}), release: make(chan struct{})}
	h.forget(t, "a", 2)
	h.forget(t, "b", 3)
	var e erasures
	firstDone := make(chan error, 1)
	go func() {
		_, err := e.of(t.Context(), h, "a", 1)
		firstDone <- err
	}()
	<-h.entered
	// Only should the second read wait for the first: then it ends.
	bound := time.AfterFunc(time.Minute, func() { close(h.release) })
	got, err := e.of(t.Context(), h, "b", 1)
	select {
	case <-firstDone:
		t.Fatal("the second resume came back only after the first's read")
	default:
	}
	if err != nil || len(got) != 1 || got[0].Position != 3 {
		t.Fatalf("b's erasures after 1: %v, %v; want the one at 3", got, err)
	}
	if bound.Stop() {
		close(h.release)
	}
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	// Both reads merged: a later resume finds a's erasure held.
	got, err = e.of(t.Context(), h, "a", 1)
	if err != nil || len(got) != 1 || got[0].Position != 2 {
		t.Fatalf("a's erasures after 1: %v, %v; want the one at 2", got, err)
	}
	if n := len(h.afters); h.afters[n-1] != 3 {
		t.Fatalf("the last resume read the subject after %d, want after 3 (what the cache held)", h.afters[n-1])
	}
}
