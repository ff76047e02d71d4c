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
	if code := rec.lastCode(""); code != "" {
		t.Fatalf("an RPC log line without a method (code %s)", code)
	}
}

// A call of a method no service on this node has (a role it does not run,
// say) is answered UNIMPLEMENTED and logged. grpc-go answered it itself,
// which no stats handler hears of: no line.
func TestUnknownMethodIsLogged(t *testing.T) {
	rec := &rpcRecorder{codes: map[string]int{}}
	r := startLogged(t, map[string]string{"ROLES": "command"}, rec)
	conn := dial(t, r.addrs.GRPC)
	for _, m := range []string{"/orders.v1.NoSuchService/Nope", ordersv1.OrderQueryService_GetOrder_FullMethodName} {
		err := conn.Invoke(t.Context(), m, &ordersv1.GetOrderRequest{OrderId: "x"}, &ordersv1.GetOrderResponse{})
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("%s: %v, want UNIMPLEMENTED", m, err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for rec.lastCode(m) != codes.Unimplemented.String() {
			if time.Now().After(deadline) {
				t.Fatalf("no RPC log line for %s", m)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
