package command_test

import (
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/services/command"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// BenchmarkCreateOrderGRPC measures CreateOrder through a real gRPC loopback
// connection onto a file-backed stream, at 1 and 32 concurrent clients, and
// reports p50/p99 latency next to the rate.
func BenchmarkCreateOrderGRPC(b *testing.B) {
	for _, clients := range []int{1, 32} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			srv := estest.StartServer(b)
			_, js := estest.Connect(b, srv)
			store, err := eventstore.New(b.Context(), js, eventstore.WithStorage(jetstream.FileStorage))
			if err != nil {
				b.Fatal(err)
			}
			svc, err := command.New(store)
			if err != nil {
				b.Fatal(err)
			}
			gs := grpc.NewServer()
			ordersv1.RegisterOrderCommandServiceServer(gs, svc)
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go func() { _ = gs.Serve(lis) }()
			b.Cleanup(gs.Stop)
			conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = conn.Close() })
			client := ordersv1.NewOrderCommandServiceClient(conn)

			var next atomic.Int64
			lat := make([][]time.Duration, clients)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for c := range clients {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						t0 := time.Now()
						_, err := client.CreateOrder(b.Context(), &ordersv1.CreateOrderRequest{
							RequestId: fmt.Sprintf("bench-%d", i), CustomerId: "cust-bench", Currency: "EUR",
							Lines: []*ordersv1.LineItem{{Sku: "SKU-1", Quantity: 1, UnitPrice: 999}},
						})
						if err != nil {
							b.Error(err)
							return
						}
						lat[c] = append(lat[c], time.Since(t0))
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			all := slices.Concat(lat...)
			slices.Sort(all)
			if len(all) > 0 {
				b.ReportMetric(float64(len(all))/elapsed.Seconds(), "orders/s")
				b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
			}
		})
	}
}
