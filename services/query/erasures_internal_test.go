package query

import (
	"context"
	"testing"

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
