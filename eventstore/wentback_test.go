package eventstore_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
)

// appendRetried appends e to order id at rev, retried while the store
// answers unavailable (a server still recovering its streams).
func appendRetried(t *testing.T, store *eventstore.Store, id string, rev uint64, e eventstore.EventData) (eventstore.AppendResult, error) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		res, err := store.Append(t.Context(), id, rev, []eventstore.EventData{e})
		if !errors.Is(err, eventstore.ErrUnavailable) || attempt == 50 {
			return res, err
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// An append at the revision this process last saw an order at is checked
// against the log again once the log may have gone back (a NATS server
// restarted without its last events): the position it remembered for that
// revision may hold another event of the order since, written by another
// process at a lower revision, and the server's check of the order's last
// position passed. The append was stored, decided on events the log lost,
// at a version that skipped one.
func TestAppendAfterTheLogWentBackChecksTheRevisionAgain(t *testing.T) {
	p := estest.StartPowerLoss(t)
	a := p.Store()
	ev := estest.Event("Changed", "{}", "")
	if _, err := appendRetried(t, a, "x", 0, ev); err != nil { // position 1
		t.Fatal(err)
	}
	p.Save()
	for rev := uint64(1); rev <= 2; rev++ { // positions 2 and 3, to be lost
		if _, err := appendRetried(t, a, "x", rev, ev); err != nil {
			t.Fatal(err)
		}
	}
	p.Lose()
	_, js := estest.ConnectURL(t, p.URL)
	b, err := eventstore.New(t.Context(), js, eventstore.WithStorage(jetstream.FileStorage))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := appendRetried(t, b, "y", 0, ev); err != nil { // position 2
		t.Fatal(err)
	}
	if res, err := appendRetried(t, b, "x", 1, ev); err != nil || res.Position != 3 { // x's version 2, at 3
		t.Fatalf("another process's append of x's version 2: %+v, %v; want it at position 3", res, err)
	}
	if res, err := appendRetried(t, a, "x", 3, ev); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("append at revision 3 of an order the log holds at revision 2: %+v, %v; want ErrConflict", res, err)
	}
}
