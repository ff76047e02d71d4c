package query_test

import (
	"context"
	"errors"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/pii"
	"github.com/orderstream/orderstream/services/query"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// unreachableKeys is a keyring whose bucket does not answer.
type unreachableKeys struct{}

var errBucketDown = errors.New("keys bucket: nats: timeout")

func (unreachableKeys) DataKey(context.Context, string) (pii.Key, error) {
	return pii.Key{}, errBucketDown
}

func (unreachableKeys) Key(context.Context, string, uint64) (pii.Key, error) {
	return pii.Key{}, errBucketDown
}

// A WatchOrder resuming from a position older than the feed keeps reads the
// order from the log; when the keys its sealed events need cannot be read,
// it answers UNAVAILABLE, to be retried. Before, it took those events for
// dead letters and went on: the creation and the changes after it were
// never sent, and the watcher's position moved past them.
func TestWatchResumeWithoutItsKeysIsUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	e := startWithKeys(t, 1) // the feed keeps 1 change
	_, before := newOrder(t, e, "c-other")
	id, _ := newOrder(t, e, "c-1") // a sealed shipping address
	last := addItems(t, e, id, 0, 3)
	if err := e.runner.WaitForCommitted(ctx, last); err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	ordersv1.RegisterOrderQueryServiceServer(gs, newQuery(t, runnerRef{e},
		query.WithFeed(e.feed), query.WithHistory(e.store), query.WithKeyring(unreachableKeys{})))
	w, err := ordersv1.NewOrderQueryServiceClient(listen(t, gs)).WatchOrder(ctx, &ordersv1.WatchOrderRequest{OrderId: id, FromPosition: before})
	if err != nil {
		t.Fatal(err)
	}
	addItems(t, e, id, 10, 1)
	m, err := w.Recv()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("resume without its keys: change at %d, %v; want UNAVAILABLE", m.GetPosition(), err)
	}
}
