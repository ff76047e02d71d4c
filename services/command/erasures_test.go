package command_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/order"
)

// countedCustomers counts the events of the customers' subject its store
// hands out.
type countedCustomers struct {
	*memstore.Store
	read atomic.Int64
}

func (s *countedCustomers) LoadLatest(ctx context.Context, orderID string) ([]eventstore.Recorded, error) {
	recs, err := s.Store.LoadLatest(ctx, orderID)
	if orderID == order.CustomersSubjectID {
		s.read.Add(int64(len(recs)))
	}
	return recs, err
}

func (s *countedCustomers) LoadLatestAfter(ctx context.Context, orderID string, after uint64) ([]eventstore.Recorded, error) {
	recs, err := s.Store.LoadLatestAfter(ctx, orderID, after)
	if orderID == order.CustomersSubjectID {
		s.read.Add(int64(len(recs)))
	}
	return recs, err
}

// An erasure reads what was recorded since the service's last one, not
// every erasure ever recorded (each call and each conflict's retry read
// the whole customers' subject: a second each at forty thousand), and is
// still answered as the original when retried, however old it is.
func TestErasureReadsOnlyWhatWasRecordedSince(t *testing.T) {
	ctx := t.Context()
	store := &countedCustomers{Store: memstore.New()}
	svc := newKeyedService(t, store)
	const n = 50
	var first uint64
	for i := range n {
		pos, err := svc.ForgetCustomer(ctx, fmt.Sprint("cust-", i), fmt.Sprint("forget-", i))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = pos
		}
	}
	if read := store.read.Load(); read > n {
		t.Fatalf("%d erasures read %d events of the customers' subject; want each read once", n, read)
	}
	if pos, err := svc.ForgetCustomer(ctx, "cust-0", "forget-0"); err != nil || pos != first {
		t.Fatalf("the first erasure retried: %d, %v; want its original position %d", pos, err, first)
	}
	other := newKeyedService(t, store) // a process that never read the subject
	if pos, err := other.ForgetCustomer(ctx, "cust-0", "forget-0"); err != nil || pos != first {
		t.Fatalf("the first erasure retried on another process: %d, %v; want %d", pos, err, first)
	}
}
