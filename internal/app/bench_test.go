package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/app"
	"github.com/orderstream/orderstream/internal/app/apptest"
	"github.com/orderstream/orderstream/internal/telemetry"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// BenchmarkAPI measures CreateOrder and GetOrder through gRPC and through
// REST on the same running ordersd (file storage, every role but payments),
// so the REST ÷ gRPC ratio comes from one run.
func BenchmarkAPI(b *testing.B) {
	ctx := context.Background()
	a, _ := apptest.Start(b, map[string]string{"ROLES": "command,query,audit,gateway"})
	conn, err := grpc.NewClient(a.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	cmd := ordersv1.NewOrderCommandServiceClient(conn)
	q := ordersv1.NewOrderQueryServiceClient(conn)
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	base := "http://" + a.HTTP
	var n atomic.Int64
	c, err := cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "seed", OrderId: "bench-order", CustomerId: "b", Currency: "EUR"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := q.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: "bench-order", Consistency: &ordersv1.Consistency{MinPosition: c.GetPosition()}}); err != nil {
		b.Fatal(err)
	}
	rest := func(b *testing.B, method, url, body string) {
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := httpc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			b.Fatalf("%s %s: %d", method, url, res.StatusCode)
		}
	}
	b.Run("CreateOrder/grpc", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: fmt.Sprint("g-", n.Add(1)), CustomerId: "b", Currency: "EUR"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("CreateOrder/rest", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				rest(b, "POST", base+"/v1/orders", fmt.Sprintf(`{"requestId":"h-%d","customerId":"b","currency":"EUR"}`, n.Add(1)))
			}
		})
	})
	b.Run("GetOrder/grpc", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := q.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: "bench-order"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("GetOrder/rest", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				rest(b, "GET", base+"/v1/orders/bench-order", "")
			}
		})
	})
	b.Run("ListOrders/grpc", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := q.ListOrders(ctx, &ordersv1.ListOrdersRequest{CustomerId: "b", PageSize: 50}); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkNATSSync compares CreateOrder throughput with the embedded
// server fsyncing periodically (NATS_SYNC=interval) and on every write
// (NATS_SYNC=always), one client and 32, same run.
func BenchmarkNATSSync(b *testing.B) {
	for _, mode := range []string{"interval", "always"} {
		for _, clients := range []int{1, 32} {
			b.Run(fmt.Sprintf("sync=%s/clients=%d", mode, clients), func(b *testing.B) {
				ctx := context.Background()
				a, stop := apptest.Start(b, map[string]string{"ROLES": "command", "NATS_SYNC": mode})
				defer stop()
				conn, err := grpc.NewClient(a.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					b.Fatal(err)
				}
				defer conn.Close()
				cmd := ordersv1.NewOrderCommandServiceClient(conn)
				var n atomic.Int64
				create := func() {
					if _, err := cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: fmt.Sprint("s-", n.Add(1)), CustomerId: "b", Currency: "EUR"}); err != nil {
						b.Fatal(err)
					}
				}
				b.ResetTimer()
				if clients == 1 {
					for b.Loop() {
						create()
					}
					return
				}
				// RunParallel runs parallelism × GOMAXPROCS goroutines.
				b.SetParallelism(max(1, clients/runtime.GOMAXPROCS(0)))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						create()
					}
				})
			})
		}
	}
}

// discard is a span exporter that drops spans, so the benchmark measures
// the cost of recording and batching them, not of a network.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// BenchmarkTracing compares CreateOrder throughput (32 clients) with
// tracing off, sampled at 100%, and sampled at 1%, same run.
func BenchmarkTracing(b *testing.B) {
	for _, mode := range []struct {
		name    string
		sampler string
	}{{"off", ""}, {"sampled-100%", "1"}, {"sampled-1%", "0.01"}} {
		b.Run(mode.name, func(b *testing.B) {
			var opts []app.Option
			if mode.sampler != "" {
				b.Setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
				b.Setenv("OTEL_TRACES_SAMPLER_ARG", mode.sampler)
				opts = append(opts, app.WithTelemetry(telemetry.WithSpanProcessor(sdktrace.NewBatchSpanProcessor(discard{}))))
			}
			ctx := context.Background()
			a, stop := apptest.Start(b, map[string]string{"ROLES": "command"}, opts...)
			defer stop()
			conn, err := grpc.NewClient(a.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			cmd := ordersv1.NewOrderCommandServiceClient(conn)
			var n atomic.Int64
			b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: fmt.Sprint("t-", n.Add(1)), CustomerId: "b", Currency: "EUR"}); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
