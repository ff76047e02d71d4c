package deadlines_test

import (
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore/estest"
)

// An order holding an event of a type a newer build added (a rolling
// upgrade) still has its payment timeout enforced: the manager folds the
// order past that event, as docs/schema-evolution.md promises, where it
// failed the fold and tried the firing again for ever.
func TestPaymentTimeoutOfAnOrderHoldingANewerBuildsEvent(t *testing.T) {
	e := start(t)
	e.run(t, time.Second, time.Hour)
	id := e.place(t, "newer")
	estest.AppendNewerBuildsEvent(t, e.store.Load(), id)
	if recs := e.waitEvent(t, id, "OrderCancelled"); recs[len(recs)-1].Type != "OrderCancelled" {
		t.Fatalf("last event %s, want OrderCancelled", recs[len(recs)-1].Type)
	}
}
