package cluster_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
)

// As TestReadBatchesReachesAcknowledgedEventsOnR3, with StartTime (an
// audit export from a time): a read that starts on a lagging peer whose
// consumer reports nothing pending still reaches the events acknowledged
// before it began. Only a read from a position asked the leader whether
// anything was left; one from a time ended empty (1 run in 3 of 300
// appends before the fix).
func TestReadBatchesFromTimeReachesAcknowledgedEventsOnR3(t *testing.T) {
	_, js := estest.ConnectURL(t, estest.StartCluster(t, 3).URLs())
	ctx := t.Context()
	s := estest.ReplicatedStore(t, js)
	for i := range 300 {
		before := time.Now().Add(-time.Millisecond)
		res, err := s.Append(ctx, fmt.Sprint("o", i), 0, []eventstore.EventData{{Type: "E", Data: make([]byte, 1000)}})
		if err != nil {
			t.Fatal(err)
		}
		got, err := estest.ReadAll(t, s.ReadBatches(ctx, 0, eventstore.StartTime(before)), 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 || got[len(got)-1].Position != res.Position {
			t.Fatalf("append %d acknowledged at %d; ReadBatches from %v = %v, no error", i, res.Position, before, estest.EntryPositions(got))
		}
	}
}
