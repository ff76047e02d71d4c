package command

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/chain"
	"github.com/orderstream/orderstream/eventstore/estest"
)

// BenchmarkCommandAppendHashChain measures the command path (decide, encode,
// append) of CreateOrder with and without the hash chain computation in one
// run: two services on the same server and stream, alternating call by
// call, so both see the same disk, cache and neighbours and the difference
// is the chain's cost. ns/op covers one call of each; chain-µs and
// no-chain-µs are the mean of each variant:
//
//	go test ./services/command -run '^$' -bench CommandAppendHashChain -benchtime 5000x
func BenchmarkCommandAppendHashChain(b *testing.B) {
	srv := estest.StartServer(b)
	_, js := estest.Connect(b, srv)
	store, err := eventstore.New(b.Context(), js, eventstore.WithStorage(jetstream.FileStorage))
	if err != nil {
		b.Fatal(err)
	}
	withChain, err := New(store)
	if err != nil {
		b.Fatal(err)
	}
	withoutChain, err := New(store)
	if err != nil {
		b.Fatal(err)
	}
	withoutChain.hash = func(string, chain.Fields) (string, error) { return "", nil }
	ctx := b.Context()
	create := func(svc *Service, id string) time.Duration {
		t0 := time.Now()
		if _, err := svc.CreateOrder(ctx, &ordersv1.CreateOrderRequest{
			RequestId: id, OrderId: id, CustomerId: "cust-bench", Currency: "EUR",
			Lines: []*ordersv1.LineItem{{Sku: "SKU-1", Quantity: 1, UnitPrice: 999}, {Sku: "SKU-2", Quantity: 3, UnitPrice: 250}},
		}); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	var on, off time.Duration
	n := 0
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		// Alternate which goes first, so neither always follows the other.
		if i%2 == 0 {
			on += create(withChain, fmt.Sprintf("chain-%d", i))
			off += create(withoutChain, fmt.Sprintf("plain-%d", i))
		} else {
			off += create(withoutChain, fmt.Sprintf("plain-%d", i))
			on += create(withChain, fmt.Sprintf("chain-%d", i))
		}
		n++
	}
	b.ReportMetric(float64(on.Microseconds())/float64(n), "chain-µs")
	b.ReportMetric(float64(off.Microseconds())/float64(n), "no-chain-µs")
	b.ReportMetric(float64(n)/on.Seconds(), "chain-appends/s")
	b.ReportMetric(float64(n)/off.Seconds(), "no-chain-appends/s")
}
