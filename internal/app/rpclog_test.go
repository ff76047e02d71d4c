package app_test

import (
	"strings"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A request over the gRPC server's receive limit is refused before any
// interceptor runs; it still gets its line in the RPC log, with the code
// the client got. Before, the log said nothing of it.
func TestOversizeRequestIsLogged(t *testing.T) {
	rec := &rpcRecorder{codes: map[string]int{}}
	r := startLogged(t, nil, rec)
	cmd := ordersv1.NewOrderCommandServiceClient(dial(t, r.addrs.GRPC))
	_, err := cmd.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: "big", CustomerId: strings.Repeat("c", 2<<20), Currency: "EUR"})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a 2 MiB request: %v, want RESOURCE_EXHAUSTED", err)
	}
	// The line is written once the call has ended, which may be after
	// the client read its answer.
	deadline := time.Now().Add(10 * time.Second)
	for rec.logged(codes.ResourceExhausted.String()) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("no RPC log line for the refused CreateOrder")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := rec.logged("no method"); n != 0 {
		t.Fatalf("%d RPC log lines without a method", n)
	}
}
