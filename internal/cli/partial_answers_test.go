package cli_test

import (
	"context"
	"strings"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/cli"
	"google.golang.org/grpc"
)

// progressThenEnd verifies part of the log and ends its stream without
// the summary, its last message.
type progressThenEnd struct {
	ordersv1.UnimplementedOrderAuditServiceServer
}

func (progressThenEnd) VerifyLog(_ *ordersv1.VerifyLogRequest, st grpc.ServerStreamingServer[ordersv1.VerifyLogResponse]) error {
	return st.Send(&ordersv1.VerifyLogResponse{Result: &ordersv1.VerifyLogResponse_Progress{Progress: &ordersv1.VerifyLogProgress{EventsChecked: 10, Position: 10, Head: 1000}}})
}

// A verification of the log whose stream ends without its summary checked
// part of the log only: no success. It exited 0, printing nothing.
func TestVerifyAllWithoutSummaryIsNoSuccess(t *testing.T) {
	addr := serve(t, func(gs *grpc.Server) { ordersv1.RegisterOrderAuditServiceServer(gs, progressThenEnd{}) })
	if r := run(t, addr, "audit", "verify", "--all"); r.code != cli.ExitUnavailable || !strings.Contains(r.stderr, "before its summary") {
		t.Fatalf("verified 10 of 1000 events, no summary: exit %d, stdout %q stderr %q; want %d saying why", r.code, r.stdout, r.stderr, cli.ExitUnavailable)
	}
}

// manyParked has more parked jobs than it lists.
type manyParked struct {
	ordersv1.UnimplementedPaymentAdminServiceServer
}

func (manyParked) ListParkedPayments(context.Context, *ordersv1.ListParkedPaymentsRequest) (*ordersv1.ListParkedPaymentsResponse, error) {
	return &ordersv1.ListParkedPaymentsResponse{Parked: []*ordersv1.ParkedPayment{{OrderId: "o-1"}}, ParkedCount: 5}, nil
}

// admin parked list's hint that more are parked goes to stderr, as the
// other lists' do: stdout holds the table's rows only. It was a line of
// the table.
func TestParkedListHintIsOnStderr(t *testing.T) {
	addr := serve(t, func(gs *grpc.Server) { ordersv1.RegisterPaymentAdminServiceServer(gs, manyParked{}) })
	r := ok(t, run(t, addr, "admin", "parked", "list"))
	if strings.Contains(r.stdout, "more parked") || !strings.Contains(r.stderr, "4 more parked") {
		t.Fatalf("stdout %q, stderr %q; want the hint on stderr only", r.stdout, r.stderr)
	}
}
