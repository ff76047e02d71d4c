package console_test

import (
	"context"
	"net/http"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	consolepkg "github.com/orderstream/orderstream/services/console"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// refusingQuery refuses every listing for want of a token.
type refusingQuery struct {
	ordersv1.UnimplementedOrderQueryServiceServer
}

func (refusingQuery) ListOrders(context.Context, *ordersv1.ListOrdersRequest) (*ordersv1.ListOrdersResponse, error) {
	return nil, status.Error(codes.Unauthenticated, "a bearer token is required")
}

// A console without authentication whose services require a token shows
// an error page. Before, it sent the browser to its sign-in page, which
// (with no authentication) sent it back, for ever.
func TestConsoleWithoutAuthInFrontOfServicesWithAuthDoesNotLoop(t *testing.T) {
	conn := stubConn(t, func(gs *grpc.Server) { ordersv1.RegisterOrderQueryServiceServer(gs, refusingQuery{}) })
	srv := serveConsole(t, consolepkg.Config{Command: conn, Query: conn, Audit: conn, Payments: conn})
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Get(srv.URL + consolepkg.Prefix + "orders")
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusBadGateway {
		t.Fatalf("orders page of a console whose services want a token it cannot have: %d (Location %q), want 502", res.StatusCode, res.Header.Get("Location"))
	}
}
