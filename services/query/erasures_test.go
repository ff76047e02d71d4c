package query_test

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/internal/pii"
	"github.com/orderstream/orderstream/order"
	"github.com/orderstream/orderstream/services/query"
)

// countingHistory counts the events of the customers' subject, where
// every customer's erasure is recorded, that the query service reads.
type countingHistory struct {
	query.History
	erasures atomic.Int64
}

func (h *countingHistory) LoadLatestAfter(ctx context.Context, id string, after uint64) ([]eventstore.Recorded, error) {
	recs, err := h.History.LoadLatestAfter(ctx, id, after)
	if id == order.CustomersSubjectID {
		h.erasures.Add(int64(len(recs)))
	}
	return recs, err
}

// startNATSWithKeys serves an env on the JetStream store of a new
// embedded nats-server, with personal data sealed by a keyring of its own
// and the resuming watches' history read through a countingHistory.
func startNATSWithKeys(t testing.TB, history int) (*env, *countingHistory) {
	t.Helper()
	master, err := pii.NewMasterKey(bytes.Repeat([]byte{7}, pii.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	_, js := estest.Connect(t, estest.StartServer(t))
	store, err := eventstore.New(t.Context(), js, eventstore.WithStorage(jetstream.MemoryStorage))
	if err != nil {
		t.Fatal(err)
	}
	h := &countingHistory{History: store}
	e := serve(t, &env{store: store, nstore: store, js: js, keys: pii.NewKeyring(pii.NewMemStore(), master)}, history, query.WithHistory(h))
	return e, h
}

// forget forgets customerID and returns the position of its erasure.
func forget(t testing.TB, e *env, customerID string) uint64 {
	t.Helper()
	fr, err := e.admin.ForgetCustomer(t.Context(), &ordersv1.ForgetCustomerRequest{CustomerId: customerID, RequestId: rid()})
	if err != nil {
		t.Fatal(err)
	}
	return fr.GetPosition()
}

// resume watches id from position from until a change at last, and
// returns the changes received.
func resume(t testing.TB, e *env, id string, from, last uint64) []*ordersv1.WatchOrderResponse {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	w, err := e.q.WatchOrder(ctx, &ordersv1.WatchOrderRequest{OrderId: id, FromPosition: from})
	if err != nil {
		t.Fatal(err)
	}
	var got []*ordersv1.WatchOrderResponse
	for len(got) == 0 || got[len(got)-1].GetPosition() < last {
		m, err := w.Recv()
		if err != nil {
			t.Fatalf("resumed from %d, after %d changes: %v", from, len(got), err)
		}
		got = append(got, m)
	}
	return got
}

// checkErased fails unless changes hold the erasure at forgot, and no
// change from it on shows the shipping address in the clear.
func checkErased(t *testing.T, changes []*ordersv1.WatchOrderResponse, forgot uint64) {
	t.Helper()
	saw := false
	for _, m := range changes {
		a := m.GetOrder().GetShippingAddress()
		if m.GetPosition() >= forgot && (!a.GetErased() || a.GetLine1() != "") {
			t.Errorf("change at %d, from the erasure at %d on: address %v, want erased", m.GetPosition(), forgot, a)
		}
		saw = saw || m.GetPosition() == forgot
	}
	if !saw {
		t.Errorf("no change at the erasure's position %d", forgot)
	}
}

// All customers' erasures share one subject. A WatchOrder resumed through
// the log read every erasure recorded since the order's creation, each
// time: a long-lived order on a busy system read the erasure history
// whole on every resume. A second resume now reads only what was recorded
// since the first, and is still sent its customer's erasure recorded
// meanwhile, with no personal data after it.
func TestWatchOrderResumedThroughTheLogReadsEachErasureOnce(t *testing.T) {
	const others = 50
	e, h := startNATSWithKeys(t, 2)
	id, created := newOrder(t, e, "c-long")
	for i := range others {
		forget(t, e, fmt.Sprintf("c-other-%d", i))
	}
	last := addItems(t, e, id, 0, 3) // pushes the creation out of the feed's history of 2
	if err := e.runner.WaitForCommitted(t.Context(), last); err != nil {
		t.Fatal(err)
	}
	resume(t, e, id, created, last)
	if n := h.erasures.Load(); n < others {
		t.Fatalf("the first resume read %d erasures; want the %d recorded since the order's creation", n, others)
	}

	h.erasures.Store(0)
	forgot := forget(t, e, "c-long")
	last = addItems(t, e, id, 3, 3)
	if err := e.runner.WaitForCommitted(t.Context(), last); err != nil {
		t.Fatal(err)
	}
	checkErased(t, resume(t, e, id, created, last), forgot)
	if n := h.erasures.Load(); n > 1 {
		t.Errorf("the second resume read %d erasures; want only the one recorded since the first", n)
	}
}

// A resume of an order older than any resumed before reads the erasures
// recorded since that older order's creation: its customer's erasure,
// recorded before the newer order was created, reaches it.
func TestWatchOrderResumedThroughTheLogGetsAnErasureOlderThanTheLastResume(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	e, _ := startNATSWithKeys(t, 2)
	old, oldCreated := newOrder(t, e, "c-old")
	forgot := forget(t, e, "c-old")
	oldLast := addItems(t, e, old, 0, 1)
	recent, recentCreated := newOrder(t, e, "c-recent")
	last := addItems(t, e, recent, 0, 3) // pushes both creations out of the feed's history of 2
	if err := e.runner.WaitForCommitted(ctx, last); err != nil {
		t.Fatal(err)
	}
	resume(t, e, recent, recentCreated, last)
	checkErased(t, resume(t, e, old, oldCreated, oldLast), forgot)
}

// BenchmarkWatchOrderResumedThroughTheLog resumes a watch of an order
// created before n erasures of other customers, from its creation, which
// the feed no longer holds, up to its last change: what each resume costs
// a node, and how many erasures it reads (erasures/op).
func BenchmarkWatchOrderResumedThroughTheLog(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("erasures=%d", n), func(b *testing.B) {
			e, h := startNATSWithKeys(b, 2)
			id, created := newOrder(b, e, "c-bench")
			for i := range n {
				forget(b, e, fmt.Sprintf("c-other-%d", i))
			}
			last := addItems(b, e, id, 0, 3)
			if err := e.runner.WaitForCommitted(b.Context(), last); err != nil {
				b.Fatal(err)
			}
			resume(b, e, id, created, last)
			h.erasures.Store(0)
			for b.Loop() {
				resume(b, e, id, created, last)
			}
			b.ReportMetric(float64(h.erasures.Load())/float64(b.N), "erasures/op")
		})
	}
}
