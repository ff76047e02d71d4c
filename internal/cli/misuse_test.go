package cli_test

import (
	"strings"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/cli"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// placedOrderOf27 creates and places the order id, of 27.00 EUR.
func placedOrderOf27(t *testing.T, g, id string) {
	t.Helper()
	ok(t, run(t, g, "orders", "create", "--order-id", id, "--customer", "c", "--currency", "EUR", "--item", "BOOK-1:2:13.50",
		"--name", "Ada", "--line1", "1 Analytical Way", "--city", "London", "--country", "GB"))
	ok(t, run(t, g, "orders", "place", id))
}

// pay --declined takes no amount: one given is a mistake (the operator
// meant to record an authorization), refused as the CLI refuses other
// meaningless flag combinations (--customer with an order id in watch,
// --from with --since, --revision with --time). It dropped --amount, even
// one that is not an amount at all, and recorded a decline.
func TestPayDeclinedRefusesAmount(t *testing.T) {
	g := server(t).GRPC
	placedOrderOf27(t, g, "pay-declined-1")
	r := run(t, g, "orders", "pay", "pay-declined-1", "--declined", "--reason", "no funds", "--amount", "not-money")
	if r.code != cli.ExitUsage {
		t.Fatalf("pay --declined --amount not-money: exit %d, want %d (usage); stdout:\n%s%s", r.code, cli.ExitUsage, r.stdout, r.stderr)
	}
}

// A negative --expected-revision is no revision an order can be at; the
// CLI took any negative one for "no check" and applied the command.
func TestNegativeExpectedRevisionRefused(t *testing.T) {
	g := server(t).GRPC
	ok(t, run(t, g, "orders", "create", "--order-id", "negative-rev-1", "--customer", "c", "--currency", "EUR"))
	r := run(t, g, "orders", "add-item", "negative-rev-1", "B", "1", "1", "--expected-revision", "-2")
	if r.code != cli.ExitUsage {
		t.Fatalf("--expected-revision -2: exit %d, want %d (usage):\n%s%s", r.code, cli.ExitUsage, r.stdout, r.stderr)
	}
}

// admin health's help: "exits 4 unless every service the server runs
// serves". A server that serves
// no health service at all (Unimplemented) serves nothing it can vouch
// for; health exited 5.
func TestHealthExitsUnavailableUnlessAllServe(t *testing.T) {
	addr := serve(t, func(*grpc.Server) {})
	r := run(t, addr, "admin", "health", "--timeout", "2s")
	if r.code != cli.ExitUnavailable {
		t.Fatalf("health of a server without health service: exit %d, want %d:\n%s%s", r.code, cli.ExitUnavailable, r.stdout, r.stderr)
	}
}

// movedPast is a query service whose WatchOrders starts, sends a change and
// then ends with OUT_OF_RANGE, as a node that swapped a whole read model in
// ends the watches it moved past.
type movedPast struct {
	ordersv1.UnimplementedOrderQueryServiceServer
}

func (movedPast) WatchOrders(req *ordersv1.WatchOrdersRequest, s grpc.ServerStreamingServer[ordersv1.WatchOrdersResponse]) error {
	if err := s.Send(&ordersv1.WatchOrdersResponse{Position: 4}); err != nil {
		return err
	}
	o := flakyOrder("ord-a", ordersv1.OrderStatus_ORDER_STATUS_PLACED)
	if err := s.Send(&ordersv1.WatchOrdersResponse{Order: o, Position: 5, Revision: 2, EventType: "OrderPlaced", Actor: "bob"}); err != nil {
		return err
	}
	return status.Error(codes.OutOfRange, "the read model caught up past changes this watch did not see; list the orders again and watch from the list's position")
}

// A watch given nothing but valid flags that the server ends with
// OUT_OF_RANGE mid-stream has no usage error: exit 1 is "usage or invalid
// argument", which told a script its command line was wrong.
func TestWatchEndedOutOfRangeIsNotUsage(t *testing.T) {
	addr := serve(t, func(gs *grpc.Server) { ordersv1.RegisterOrderQueryServiceServer(gs, movedPast{}) })
	r := run(t, addr, "orders", "watch", "--customer", "c")
	if !strings.Contains(r.stdout, "ord-a") {
		t.Fatalf("the change was not printed: %+v", r)
	}
	if r.code == cli.ExitUsage {
		t.Fatalf("a watch the server ended OUT_OF_RANGE exits %d (usage): %s", r.code, r.stderr)
	}
}
