package app_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/services/deadlines"
	"google.golang.org/grpc/metadata"
)

// cancelActor places an order on a process running command, audit and
// payments with authentication on, lets its payment time out, and returns
// the actor of the OrderCancelled the deadlines recorded.
func cancelActor(t *testing.T, extra ...string) string {
	t.Helper()
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("clerk-token-0123456789 alice clerk,auditor\npayments-token-0123456 pay clerk\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := []string{"ROLES", "command,query,audit,payments", "AUTH_TOKENS_FILE", tokens,
		"PAYMENT_TIMEOUT", "1s", "PAYMENT_SIM_LATENCY", "8s", "PAYMENT_ATTEMPT_TIMEOUT", "20s"}
	addrs, _ := run(t, t.TempDir(), append(vars, extra...)...)
	conn := dial(t, addrs.GRPC)
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer clerk-token-0123456789")
	cmd := ordersv1.NewOrderCommandServiceClient(conn)
	if _, err := cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "dl-1", OrderId: "dl-1", CustomerId: "c", Currency: "EUR",
		Lines: []*ordersv1.LineItem{{Sku: "A", Quantity: 1, UnitPrice: 100}}, ShippingAddress: &ordersv1.Address{Line1: "1", City: "Oslo", Country: "NO"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: "dl-2", OrderId: "dl-1"}); err != nil {
		t.Fatal(err)
	}
	audit := ordersv1.NewOrderAuditServiceClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		h, err := audit.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: "dl-1"})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range h.GetEvents() {
			if e.GetType() == "OrderCancelled" {
				return e.GetActor()
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no OrderCancelled within 30s")
	return ""
}

// Without PAYMENTS_TOKEN the deadlines cancel as "system".
func TestDeadlinesActAsSystemWithoutPaymentsToken(t *testing.T) {
	if a := cancelActor(t); a != deadlines.Actor {
		t.Fatalf("payment timeout cancelled by %q, want %q", a, deadlines.Actor)
	}
}

// With PAYMENTS_TOKEN set but the command role in this very process
// (COMMAND_ADDR empty), the deadlines still call this process's own
// listener: the README says they act as the token's subject only when the
// command role is elsewhere, and the deadlines package says its calls
// should carry the system actor's credentials. They cancelled as the
// token's subject.
func TestDeadlinesActAsSystemBesideLocalCommandWithPaymentsToken(t *testing.T) {
	if a := cancelActor(t, "PAYMENTS_TOKEN", "payments-token-0123456"); a != deadlines.Actor {
		t.Fatalf("payment timeout cancelled by %q, want %q (the deadlines present PAYMENTS_TOKEN to this process's own command role)", a, deadlines.Actor)
	}
}
