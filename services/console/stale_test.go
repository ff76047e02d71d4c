package console_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/rpcerr"
	consolepkg "github.com/orderstream/orderstream/services/console"
	"google.golang.org/grpc"
)

// laggingQuery is a read model behind the order's last change (revision
// 3, at position 7): read at an earlier position it shows revision 2.
type laggingQuery struct {
	ordersv1.UnimplementedOrderQueryServiceServer
}

func (laggingQuery) GetOrder(_ context.Context, req *ordersv1.GetOrderRequest) (*ordersv1.GetOrderResponse, error) {
	o := &ordersv1.Order{OrderId: "o-1", CustomerId: "c", Currency: "EUR", Status: ordersv1.OrderStatus_ORDER_STATUS_DRAFT, Revision: 2}
	if req.GetConsistency().GetMinPosition() >= 7 {
		o.Status, o.Revision = ordersv1.OrderStatus_ORDER_STATUS_CANCELLED, 3
		return &ordersv1.GetOrderResponse{Order: o, Position: 7}, nil
	}
	return &ordersv1.GetOrderResponse{Order: o, Position: 5}, nil
}

// staleCommands refuses every place: the order is at revision 3, its last
// change at position 7.
type staleCommands struct {
	ordersv1.UnimplementedOrderCommandServiceServer
}

func (staleCommands) PlaceOrder(ctx context.Context, req *ordersv1.PlaceOrderRequest) (*ordersv1.PlaceOrderResponse, error) {
	return nil, rpcerr.ToStatus(ctx, nil, &rpcerr.StaleRevisionError{Expected: req.GetExpectedRevision(), Revision: 3, Position: 7})
}

// A command refused for a stale revision shows the order as it is now,
// read at the position the refusal names: from a read model that had not
// applied the change yet, the page showed the revision acted on again, and
// acting on it again was refused again.
func TestStaleRevisionShowsTheOrderAsTheRefusalSaysItIs(t *testing.T) {
	conn := stubConn(t, func(gs *grpc.Server) {
		ordersv1.RegisterOrderQueryServiceServer(gs, laggingQuery{})
		ordersv1.RegisterOrderCommandServiceServer(gs, staleCommands{})
	})
	srv := serveConsole(t, consolepkg.Config{Command: conn, Query: conn, Audit: conn, Payments: conn})
	cl := newClient(t, srv.URL)
	res, page := cl.do("GET", consolepkg.Prefix+"orders/o-1", nil, nil)
	m := csrfMeta.FindStringSubmatch(page)
	if res.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("order page: %s, CSRF token found %v", res.Status, m != nil)
	}
	res, page = cl.do("POST", consolepkg.Prefix+"orders/o-1/place", url.Values{"csrf": {m[1]}, "expected_revision": {"2"}}, nil)
	if res.StatusCode != http.StatusConflict {
		t.Fatalf("place at a stale revision: %s, want 409", res.Status)
	}
	if strings.Contains(page, `name="expected_revision" value="2"`) || !strings.Contains(page, "cancelled") {
		t.Fatalf("after a stale revision, the page shows the order as the lagging read model has it (revision 2, a draft):\n%.2000s", page)
	}
}
