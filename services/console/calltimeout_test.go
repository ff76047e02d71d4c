package console_test

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	consolepkg "github.com/orderstream/orderstream/services/console"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// hangingQuery is a query service that hangs on every read a page makes,
// failing at once one that comes without a deadline (a call that would
// hang for ever), and whose watch sends a change only when it has no
// deadline (a stream lasts as long as the page is open).
type hangingQuery struct {
	ordersv1.UnimplementedOrderQueryServiceServer
}

func (hangingQuery) GetOrder(ctx context.Context, _ *ordersv1.GetOrderRequest) (*ordersv1.GetOrderResponse, error) {
	if _, ok := ctx.Deadline(); !ok {
		return nil, status.Error(codes.Internal, "called without a deadline: this call would never end")
	}
	<-ctx.Done()
	return nil, status.FromContextError(ctx.Err()).Err()
}

func (hangingQuery) WatchOrder(_ *ordersv1.WatchOrderRequest, s grpc.ServerStreamingServer[ordersv1.WatchOrderResponse]) error {
	if _, ok := s.Context().Deadline(); ok {
		return status.Error(codes.Internal, "a watch with a deadline: it would end while its page is open")
	}
	if err := s.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	if err := s.Send(&ordersv1.WatchOrderResponse{Order: firstOrder, Position: 2, Revision: 2, EventType: "ItemAdded"}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

// A page whose service hangs is answered 503 ("unavailable") once the
// console's call timeout passes; the page's live stream has no such
// bound. Before, a page's calls had no deadline of their own, and a
// service that hung held the page until the browser gave up.
func TestPageOfAHangingServiceIsUnavailable(t *testing.T) {
	conn := stubConn(t, func(gs *grpc.Server) { ordersv1.RegisterOrderQueryServiceServer(gs, hangingQuery{}) })
	srv := serveConsole(t, consolepkg.Config{Command: conn, Query: conn, Audit: conn, Payments: conn, CallTimeout: 50 * time.Millisecond})
	res, err := http.Get(srv.URL + consolepkg.Prefix + "orders/first-order")
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("order page of a service that hangs: %d, want 503", res.StatusCode)
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+consolepkg.Prefix+"orders/first-order/events?since=1&rev=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var event []string
	for sc := bufio.NewScanner(res.Body); sc.Scan() && sc.Text() != ""; {
		event = append(event, sc.Text())
	}
	if got := strings.Join(event, "\n"); !strings.Contains(got, "event: changed") {
		t.Fatalf("the live stream sent no change (status %d):\n%s", res.StatusCode, got)
	}
}

// A negative call timeout is refused, as the other bounds are.
func TestNegativeCallTimeoutIsRefused(t *testing.T) {
	conn := stubConn(t, func(*grpc.Server) {})
	if _, err := consolepkg.New(consolepkg.Config{Command: conn, Query: conn, Audit: conn, Payments: conn, CallTimeout: -time.Second}); err == nil {
		t.Fatal("a console with a negative call timeout was made")
	}
}
