package rawbench_test

import (
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/eventstore/rawbench"
)

// The raw stream keeps the duplicate window ORDERS has on the server
// (DUPLICATE_WINDOW changes what a publish costs), not the store's
// default: a floor taken beside an ordersd with another window compared
// unlike publishes.
func TestRawStreamKeepsTheOrdersDuplicateWindow(t *testing.T) {
	srv := estest.StartServer(t)
	_, js := estest.Connect(t, srv)
	if _, err := eventstore.New(t.Context(), js, eventstore.WithDuplicateWindow(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	raw, err := rawbench.Open(t.Context(), srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	st, err := js.Stream(t.Context(), rawbench.RawStream)
	if err != nil {
		t.Fatal(err)
	}
	if d := st.CachedInfo().Config.Duplicates; d != 10*time.Second {
		t.Fatalf("the raw stream's duplicate window: %v, want ORDERS' 10s", d)
	}
}
