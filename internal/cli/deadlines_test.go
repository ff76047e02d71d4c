package cli_test

import (
	"context"
	"strings"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/grpc"
)

// listedDeadlines answers ListDeadlines with the same three deadlines.
type listedDeadlines struct {
	ordersv1.UnimplementedDeadlineAdminServiceServer
}

func (listedDeadlines) ListDeadlines(context.Context, *ordersv1.ListDeadlinesRequest) (*ordersv1.ListDeadlinesResponse, error) {
	return &ordersv1.ListDeadlinesResponse{Deadlines: []*ordersv1.Deadline{
		{OrderId: "waits", Kind: ordersv1.DeadlineKind_DEADLINE_KIND_PAYMENT_TIMEOUT},
		{OrderId: "owed", Kind: ordersv1.DeadlineKind_DEADLINE_KIND_PAYMENT_TIMEOUT, Fired: true},
		{OrderId: "late", Kind: ordersv1.DeadlineKind_DEADLINE_KIND_SHIPPING_SLA, Overdue: true},
	}}, nil
}

// admin deadlines list tells a deadline that fired and is not enforced yet
// from one still pending, and from an overdue shipment.
func TestDeadlinesListStates(t *testing.T) {
	addr := serve(t, func(gs *grpc.Server) { ordersv1.RegisterDeadlineAdminServiceServer(gs, listedDeadlines{}) })
	r := ok(t, run(t, addr, "admin", "deadlines", "list"))
	want := map[string]string{"waits": "pending", "owed": "fired", "late": "overdue"}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		if state, ok := want[f[0]]; ok {
			if f[3] != state {
				t.Errorf("%s listed as %q, want %q:\n%s", f[0], f[3], state, r.stdout)
			}
			delete(want, f[0])
		}
	}
	if len(want) != 0 {
		t.Fatalf("not listed: %v\n%s", want, r.stdout)
	}
}
