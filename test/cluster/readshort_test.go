package cluster_test

import (
	"fmt"
	"testing"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
)

// A batch read on a replicated stream reaches every event acknowledged
// before it began, whichever peer hosts its consumer: one on a peer that
// lags reports nothing pending before the leader's head, and the read
// ended there, an export or a log verification short of the newest events
// with no error. Each append is read back at once, from its own position.
func TestReadBatchesReachesAcknowledgedEventsOnR3(t *testing.T) {
	_, js := estest.ConnectURL(t, estest.StartCluster(t, 3).URLs())
	ctx := t.Context()
	s := estest.ReplicatedStore(t, js)
	for i := range 300 {
		res, err := s.Append(ctx, fmt.Sprint("o", i), 0, []eventstore.EventData{{Type: "E", Data: make([]byte, 1000)}})
		if err != nil {
			t.Fatal(err)
		}
		got, err := estest.ReadAll(t, s.ReadBatches(ctx, res.Position), 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 || got[0].Position != res.Position {
			t.Fatalf("append %d acknowledged at %d; ReadBatches from it = %v, no error", i, res.Position, estest.EntryPositions(got))
		}
		one, err := estest.ReadAll(t, s.ReadBatches(ctx, 0, eventstore.ForOrders(fmt.Sprint("o", i))), 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(one) != 1 || one[0].Position != res.Position {
			t.Fatalf("append %d acknowledged at %d; ReadBatches of its order = %v, no error", i, res.Position, estest.EntryPositions(one))
		}
	}
}
