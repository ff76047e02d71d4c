package httpapi_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

var benchSeq atomic.Int64

// benchOps are CreateOrder and GetOrder over gRPC and over REST, each
// decoding the answer into the response message as a typed client would.
type benchOps struct {
	e       *env
	orderID string
}

func newBenchOps(b *testing.B) *benchOps {
	e := start(b)
	o := &benchOps{e: e}
	res := o.grpcCreate(b)
	o.orderID = res.GetOrder().GetOrderId()
	// Make sure the read model has the order before GetOrder is timed.
	if _, err := e.query.GetOrder(b.Context(), &ordersv1.GetOrderRequest{OrderId: o.orderID,
		Consistency: &ordersv1.Consistency{MinPosition: res.GetPosition()}}); err != nil {
		b.Fatal(err)
	}
	return o
}

func (o *benchOps) grpcCreate(b testing.TB) *ordersv1.CreateOrderResponse {
	res, err := o.e.cmd.CreateOrder(b.Context(), &ordersv1.CreateOrderRequest{
		RequestId: fmt.Sprintf("bench-grpc-%d", benchSeq.Add(1)), CustomerId: "bench", Currency: "EUR",
		Lines: []*ordersv1.LineItem{{Sku: "BOOK-1", Quantity: 2, UnitPrice: 1250}},
	})
	if err != nil {
		b.Fatal(err)
	}
	return res
}

func (o *benchOps) grpcGet(b testing.TB) {
	if _, err := o.e.query.GetOrder(b.Context(), &ordersv1.GetOrderRequest{OrderId: o.orderID}); err != nil {
		b.Fatal(err)
	}
}

func (o *benchOps) rest(b testing.TB, method, path, body string, into proto.Message) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(b.Context(), method, o.e.base+path, rd)
	if err != nil {
		b.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", fmt.Sprintf("bench-rest-%d", benchSeq.Add(1)))
	}
	res, err := o.e.http.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	raw, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK {
		b.Fatalf("%s %s: HTTP %d %s %v", method, path, res.StatusCode, raw, err)
	}
	if err := protojson.Unmarshal(raw, into); err != nil {
		b.Fatal(err)
	}
}

func (o *benchOps) restCreate(b testing.TB) {
	o.rest(b, "POST", "/v1/orders", `{"customerId":"bench","currency":"EUR","lines":[{"sku":"BOOK-1","quantity":"2","unitPrice":"1250"}]}`, &ordersv1.CreateOrderResponse{})
}

func (o *benchOps) restGet(b testing.TB) {
	o.rest(b, "GET", "/v1/orders/"+o.orderID, "", &ordersv1.GetOrderResponse{})
}

// BenchmarkCreateOrder appends one OrderCreated per operation, through the
// gRPC client directly and through the REST gateway.
func BenchmarkCreateOrder(b *testing.B) {
	o := newBenchOps(b)
	b.Run("grpc", func(b *testing.B) {
		for b.Loop() {
			o.grpcCreate(b)
		}
	})
	b.Run("rest", func(b *testing.B) {
		for b.Loop() {
			o.restCreate(b)
		}
	})
}

// BenchmarkGetOrder reads one order from the read model.
func BenchmarkGetOrder(b *testing.B) {
	o := newBenchOps(b)
	b.Run("grpc", func(b *testing.B) {
		for b.Loop() {
			o.grpcGet(b)
		}
	})
	b.Run("rest", func(b *testing.B) {
		for b.Loop() {
			o.restGet(b)
		}
	})
}

// BenchmarkRESTvsGRPC interleaves the gRPC and the REST call of each
// operation in one loop, so both see the same machine state, and reports
// each one's latency and their ratio (rest/grpc).
func BenchmarkRESTvsGRPC(b *testing.B) {
	o := newBenchOps(b)
	for _, op := range []struct {
		name       string
		grpc, rest func(testing.TB)
	}{
		{"CreateOrder", func(b testing.TB) { o.grpcCreate(b) }, o.restCreate},
		{"GetOrder", o.grpcGet, o.restGet},
	} {
		b.Run(op.name, func(b *testing.B) {
			var g, r time.Duration
			n := 0
			for b.Loop() {
				t0 := time.Now()
				op.grpc(b)
				t1 := time.Now()
				op.rest(b)
				g += t1.Sub(t0)
				r += time.Since(t1)
				n++
			}
			b.ReportMetric(float64(g.Nanoseconds())/float64(n), "grpc-ns/op")
			b.ReportMetric(float64(r.Nanoseconds())/float64(n), "rest-ns/op")
			b.ReportMetric(float64(r)/float64(g), "rest/grpc")
		})
	}
}
