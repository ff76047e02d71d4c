package projections

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
)

// Concurrent point reads reuse the read pool's connections instead of
// opening (and closing) one per call, and answer with the checkpoint of the
// state they read; an unknown order is ErrOrderNotFound.
func TestConcurrentReadsKeepTheirConnections(t *testing.T) {
	ctx := t.Context()
	m, err := OpenReadModel(ctx, filepath.Join(t.TempDir(), "rm.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	var items []Item
	for i := range 20 {
		id := fmt.Sprintf("order-%d", i)
		items = append(items, Item{Rec: eventstore.Recorded{OrderID: id, Position: uint64(i + 1), Type: "OrderCreated", Time: at},
			Event: order.OrderCreated{OrderID: id, CustomerID: "c-1", Currency: "EUR"}})
	}
	if _, _, err := m.Apply(ctx, items); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*readConns)
	for g := range 4 * readConns {
		wg.Go(func() {
			for i := range 25 {
				id := fmt.Sprintf("order-%d", (g+i)%20)
				o, pos, err := m.GetOrder(ctx, id)
				if err != nil || o.State.ID != id || pos != 20 {
					errs <- fmt.Errorf("GetOrder(%s) = %s at %d, %v", id, o.State.ID, pos, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := m.r.Stats(); st.MaxIdleClosed != 0 || st.MaxLifetimeClosed != 0 || st.MaxIdleTimeClosed != 0 || st.OpenConnections > readConns {
		t.Fatalf("read pool closed connections it opened: %+v", st)
	}
	if _, _, err := m.GetOrder(ctx, "nobody"); !errors.Is(err, ErrOrderNotFound) {
		t.Fatalf("unknown order: %v, want ErrOrderNotFound", err)
	}
}
