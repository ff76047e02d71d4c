package console_test

import (
	"context"
	"net/http"
	"net/url"
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
	cl := newClient(t, srv.URL)
	if res, _ := cl.do("GET", consolepkg.Prefix+"orders/first-order", nil, nil); res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("order page of a service that hangs: %s, want 503", res.Status)
	}
	if e := cl.live(consolepkg.Prefix+"orders/first-order/events?rev=1", "1").next(); e.Name != "changed" {
		t.Fatalf("the live stream's first event: %+v, want the change", e)
	}
}

// retryDeadline is a payment admin service that tells the deadline each
// retry of parked jobs came with (negative: none).
type retryDeadline struct {
	ordersv1.UnimplementedPaymentAdminServiceServer
	left chan time.Duration
}

func (p retryDeadline) RetryParkedPayment(ctx context.Context, _ *ordersv1.RetryParkedPaymentRequest) (*ordersv1.RetryParkedPaymentResponse, error) {
	left := time.Duration(-1)
	if d, ok := ctx.Deadline(); ok {
		left = time.Until(d)
	}
	p.left <- left
	return &ordersv1.RetryParkedPaymentResponse{}, nil
}

// "Retry all" runs every parked job, one after another, for as long as
// they take: not under the page's call timeout, which gave up part-way
// through the list.
func TestRetryOfParkedJobsHasNoPageDeadline(t *testing.T) {
	p := retryDeadline{left: make(chan time.Duration, 1)}
	conn := stubConn(t, func(gs *grpc.Server) { ordersv1.RegisterPaymentAdminServiceServer(gs, p) })
	srv := serveConsole(t, consolepkg.Config{Command: conn, Query: conn, Audit: conn, Payments: conn})
	cl := newClient(t, srv.URL)
	_, page := cl.do("GET", consolepkg.Prefix+"operations", nil, nil)
	m := csrfMeta.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token on the operations page")
	}
	res, _ := cl.do("POST", consolepkg.Prefix+"operations/parked/retry", url.Values{"csrf": {m[1]}}, nil)
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("Retry all: %s, want 303 to the operations page", res.Status)
	}
	if left := <-p.left; left >= 0 {
		t.Errorf("Retry all ran under a deadline %v away", left.Round(time.Second))
	}
}
