package payments

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
)

// delivered is the recorded event e of order id at version and position.
func delivered(t *testing.T, id string, version, position uint64, e order.Event) eventstore.Recorded {
	t.Helper()
	typ, data, err := convert.EncodeEvent(e)
	if err != nil {
		t.Fatal(err)
	}
	return eventstore.Recorded{OrderID: id, Version: version, Position: position, Type: typ, Data: data}
}

// A state is kept only while it folds the order's whole history, in
// order; anything else drops it, and a redelivery changes nothing.
func TestStatesFoldOnlyWholeHistories(t *testing.T) {
	created := order.OrderCreated{OrderID: "o", CustomerID: "c", Currency: "EUR"}
	item := order.ItemAdded{SKU: "A", Quantity: 1, UnitPrice: 250}
	placed := order.OrderPlaced{Subtotal: 250, Total: 250}
	// The order's three events as delivered (version n at position 10n),
	// the first two without versions, and the second undecodable.
	v1, v2, v3 := delivered(t, "o", 1, 10, created), delivered(t, "o", 2, 20, item), delivered(t, "o", 3, 30, placed)
	u1, u2 := delivered(t, "o", 0, 10, created), delivered(t, "o", 0, 20, item)
	bad := v2
	bad.Data = []byte{0xff, 0xff}
	for _, c := range []struct {
		name    string
		events  []eventstore.Recorded
		kept    bool
		version uint64
	}{
		{"in order", []eventstore.Recorded{v1, v2, v3}, true, 3},
		{"redelivered", []eventstore.Recorded{v1, v2, v1}, true, 2},
		{"start not seen", []eventstore.Recorded{v2, v3}, false, 0},
		{"overtaken", []eventstore.Recorded{v1, v3, v2}, false, 0},
		{"no versions", []eventstore.Recorded{u1, u2}, false, 0},
		{"undecodable", []eventstore.Recorded{v1, bad}, false, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newStates(8)
			var want order.State
			for _, r := range c.events {
				s.observe(r)
			}
			st, pos, ok := s.get("o")
			if ok != c.kept {
				t.Fatalf("kept = %v, want %v", ok, c.kept)
			}
			if !ok {
				return
			}
			for _, e := range []order.Event{created, item, placed}[:c.version] {
				want = order.Evolve(want, e, time.Time{})
			}
			if pos != 10*c.version || !reflect.DeepEqual(st.State, want) {
				t.Fatalf("state %+v at %d, want %+v at %d", st, pos, want, 10*c.version)
			}
		})
	}
}

// The states stay within their bound, and an order just started is kept.
func TestStatesAreBounded(t *testing.T) {
	const limit = 50
	s := newStates(limit)
	for i := range 10 * limit {
		id := fmt.Sprint("o", i)
		s.observe(delivered(t, id, 1, uint64(i+1), order.OrderCreated{OrderID: id, CustomerID: "c", Currency: "EUR"}))
		if len(s.m) > limit {
			t.Fatalf("after %d orders %d states, bound %d", i+1, len(s.m), limit)
		}
		if _, _, ok := s.get(id); !ok {
			t.Fatalf("the state of %s, just started, was evicted", id)
		}
	}
	none := newStates(0)
	none.observe(delivered(t, "o", 1, 1, order.OrderCreated{OrderID: "o", CustomerID: "c", Currency: "EUR"}))
	if _, _, ok := none.get("o"); ok {
		t.Fatal("a manager keeping no states kept one")
	}
}
