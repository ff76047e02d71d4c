package command

import (
	"runtime"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
)

// BenchmarkHistoriesMemory reports the heap a full cache of recent
// histories holds per order (B/order), for orders of a create and three
// added items read back from JetStream, the way a command node caches them:
//
//	go test ./services/command -run '^$' -bench HistoriesMemory -benchtime 1x
func BenchmarkHistoriesMemory(b *testing.B) {
	srv := estest.StartServer(b)
	_, js := estest.Connect(b, srv)
	store, err := eventstore.New(b.Context(), js, eventstore.WithStorage(jetstream.MemoryStorage))
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(store, WithHistories(0))
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	ids := make([]string, DefaultHistories)
	for i := range ids {
		ids[i] = "mem-" + strconv.Itoa(i)
		if _, err := s.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: ids[i], OrderId: ids[i], CustomerId: "customer-" + strconv.Itoa(i%100),
			Currency: "EUR", ShippingAddress: &ordersv1.Address{Name: "Ada Lovelace", Line1: "1 Analytical Way", City: "London", PostalCode: "N1 9GU", Country: "GB"}}); err != nil {
			b.Fatal(err)
		}
		for j := range 3 {
			if _, err := s.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: ids[i] + "-" + strconv.Itoa(j), OrderId: ids[i], Sku: "SKU-" + strconv.Itoa(j), Quantity: 1, UnitPrice: 1250}); err != nil {
				b.Fatal(err)
			}
		}
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	for b.Loop() {
		s.recent = newHistories(DefaultHistories)
		before := heap()
		for _, id := range ids {
			recs, err := store.Load(ctx, id)
			if err != nil || len(recs) != 4 {
				b.Fatalf("load %s: %d events, %v", id, len(recs), err)
			}
			s.recent.loaded(id, recs)
		}
		b.ReportMetric(float64(heap()-before)/float64(len(ids)), "B/order")
	}
}
