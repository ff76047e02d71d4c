package projections

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
)

// Commits reach the database file through the background checkpoint, long
// before the WAL grows to the writer's own threshold.
func TestCommitsAreCheckpointedInTheBackground(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rm.db")
	m := openModel(t, path)
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	// Enough orders to outgrow the free pages the schema's migrations
	// left in the file, which the open's checkpoint wrote.
	var items []Item
	for i := range 1000 {
		id := fmt.Sprintf("order-%d", i)
		items = append(items, Item{Rec: eventstore.Recorded{OrderID: id, Position: uint64(i + 1), Version: 1, Type: "OrderCreated", Time: at},
			Event: order.OrderCreated{OrderID: id, CustomerID: "c-1", Currency: "EUR"}})
	}
	if _, _, err := m.Apply(t.Context(), items); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); size() <= before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the database file stayed at %d bytes: the commit was not checkpointed", before)
		}
	}
}
