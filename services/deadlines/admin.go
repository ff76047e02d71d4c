package deadlines

import (
	"context"
	"log/slog"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/internal/rpcerr"
	"github.com/orderstream/orderstream/order"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Admin implements ordersv1.DeadlineAdminServiceServer.
type Admin struct {
	ordersv1.UnimplementedDeadlineAdminServiceServer
	m   *Manager
	log *slog.Logger
}

// NewAdmin returns the admin service of m.
func NewAdmin(m *Manager, log *slog.Logger) *Admin {
	return &Admin{m: m, log: rpcerr.DefaultLogger(log)}
}

var kinds = map[string]ordersv1.DeadlineKind{
	kindPayment:  ordersv1.DeadlineKind_DEADLINE_KIND_PAYMENT_TIMEOUT,
	kindShipping: ordersv1.DeadlineKind_DEADLINE_KIND_SHIPPING_SLA,
}

// ListDeadlines lists pending deadlines, those that fired and wait to be
// enforced, and overdue shipments, soonest due first. INVALID_ARGUMENT for a malformed order id or a limit outside
// 0-1000.
func (a *Admin) ListDeadlines(ctx context.Context, req *ordersv1.ListDeadlinesRequest) (*ordersv1.ListDeadlinesResponse, error) {
	if id := req.GetOrderId(); id != "" && (order.ValidateID("order_id", id) != nil || eventstore.ValidOrderID(id) != nil) {
		return nil, rpcerr.Invalid("order_id", "must be 1-64 printable ASCII characters without spaces, '.', '*' or '>'")
	}
	limit, err := rpcerr.Limit("limit", req.GetLimit(), 100, 1000)
	if err != nil {
		return nil, err
	}
	ds, truncated, err := a.m.List(ctx, req.GetOrderId(), limit)
	if err != nil {
		return nil, rpcerr.ToStatus(ctx, a.log, err)
	}
	res := &ordersv1.ListDeadlinesResponse{Truncated: truncated}
	for _, d := range ds {
		res.Deadlines = append(res.Deadlines, &ordersv1.Deadline{OrderId: d.OrderID, Kind: kinds[d.Kind], DueAt: timestamppb.New(d.Due),
			Overdue: d.Overdue, Fired: d.Fired, Position: d.Position})
	}
	return res, nil
}
