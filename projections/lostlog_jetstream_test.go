package projections_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/order"
	"github.com/orderstream/orderstream/projections"
)

// The README (Durability): "A node that finds so while it follows the log
// (its NATS server came back without those events) stops and exits
// non-zero". TestRunnerStopsWhenItsLogRetookItsPositions proves it on a
// fake log whose follow fails when the log is switched; here the log is
// the JetStream store, whose NATS server restarts from files that lack the
// last events (as after a power loss under NATS_SYNC=interval) and then
// takes new events at those positions.
func TestRunnerOnJetStreamStopsWhenItsServerCameBackWithoutItsLastEvents(t *testing.T) {
	ctx := t.Context()
	power := estest.StartPowerLoss(t)
	store := power.Store()
	create(t, store, "lost-0", "c")
	create(t, store, "lost-1", "c")
	power.Save() // the log of two events: what the disk will hold after the power loss
	var lastBefore uint64
	for i := 2; i < 5; i++ {
		lastBefore = createRetried(t, store, fmt.Sprintf("lost-%d", i))
	}

	d, err := projections.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	r, err := projections.NewRunner(store, d)
	if err != nil {
		t.Fatal(err)
	}
	rctx, stopRun := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	t.Cleanup(func() { stopRun(); <-done })
	if err := r.WaitForCommitted(ctx, lastBefore); err != nil {
		t.Fatal(err)
	}

	power.Lose() // the server comes back from the files of the power loss
	var head uint64
	for i := range 4 {
		head = createRetried(t, store, fmt.Sprintf("new-%d", i))
	}
	if head <= lastBefore {
		t.Fatalf("head %d after the loss, want past the read model's checkpoint %d", head, lastBefore)
	}

	wctx, stopWait := context.WithCancel(ctx)
	defer stopWait()
	followedOn := make(chan struct{})
	go func() {
		if r.WaitForCommitted(wctx, head) == nil {
			close(followedOn)
		}
	}()
	select {
	case err := <-done:
		done <- err // for the cleanup
		if !errors.Is(err, projections.ErrNotTheLog) {
			t.Fatalf("Run on a log that lost the read model's checkpoint: %v, want ErrNotTheLog", err)
		}
	case <-followedOn:
		var missing []string
		for i := range 3 {
			id := fmt.Sprintf("new-%d", i)
			if _, _, err := r.ReadModel().GetOrder(ctx, id); errors.Is(err, projections.ErrOrderNotFound) {
				missing = append(missing, id)
			}
		}
		t.Fatalf("the runner followed on to position %d of a log that no longer holds its checkpoint %d; orders the log holds that the read model skipped: %v",
			head, lastBefore, missing)
	}
}

// createRetried is create, retried with the same request id while the
// store answers unavailable (a server still recovering its streams), as a
// client retries a command.
func createRetried(t *testing.T, store *eventstore.Store, id string) uint64 {
	t.Helper()
	typ, data, err := convert.EncodeEvent(order.OrderCreated{OrderID: id, CustomerID: "c", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	return estest.AppendRetried(t, store, id, eventstore.EventData{Type: typ, Data: data, Meta: eventstore.Metadata{RequestID: id, OccurredAt: time.Now()}})
}
