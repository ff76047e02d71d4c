package payments

import (
	"context"
	"errors"
	"log/slog"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/rpcerr"
	"github.com/orderstream/orderstream/services/command"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Admin implements ordersv1.PaymentAdminServiceServer.
type Admin struct {
	ordersv1.UnimplementedPaymentAdminServiceServer
	m   *Manager
	log *slog.Logger
}

// NewAdmin returns the admin service of m.
func NewAdmin(m *Manager, log *slog.Logger) *Admin {
	return &Admin{m: m, log: rpcerr.DefaultLogger(log)}
}

// kindOf is kindProto's inverse; false for any other value.
func kindOf(k ordersv1.PaymentJobKind) (jobKind, bool) {
	switch k {
	case ordersv1.PaymentJobKind_PAYMENT_JOB_KIND_CHARGE:
		return kindCharge, true
	case ordersv1.PaymentJobKind_PAYMENT_JOB_KIND_REFUND:
		return kindRefund, true
	}
	return "", false
}

func kindProto(k jobKind) ordersv1.PaymentJobKind {
	switch k {
	case kindCharge:
		return ordersv1.PaymentJobKind_PAYMENT_JOB_KIND_CHARGE
	case kindRefund:
		return ordersv1.PaymentJobKind_PAYMENT_JOB_KIND_REFUND
	}
	return ordersv1.PaymentJobKind_PAYMENT_JOB_KIND_UNSPECIFIED
}

// ListParkedPayments lists parked jobs, oldest first, at most the
// request's limit of them, with how many are parked in all: an outage can
// park more than one answer should carry. INVALID_ARGUMENT for a limit
// outside 0-1000.
func (a *Admin) ListParkedPayments(ctx context.Context, req *ordersv1.ListParkedPaymentsRequest) (*ordersv1.ListParkedPaymentsResponse, error) {
	limit, err := rpcerr.Limit("limit", req.GetLimit(), 100, 1000)
	if err != nil {
		return nil, err
	}
	jobs, err := a.m.Parked(ctx)
	if err != nil {
		return nil, rpcerr.ToStatus(ctx, a.log, err)
	}
	res := &ordersv1.ListParkedPaymentsResponse{ParkedCount: uint32(len(jobs))}
	for _, j := range jobs[:min(len(jobs), limit)] {
		res.Parked = append(res.Parked, parkedProto(j))
	}
	return res, nil
}

// parkedProto is a parked job as the API shows it.
func parkedProto(j job) *ordersv1.ParkedPayment {
	return &ordersv1.ParkedPayment{OrderId: j.OrderID, Kind: kindProto(j.Kind), Position: j.Position,
		Attempts: uint32(j.Attempts), LastError: j.LastError, ParkedAt: timestamppb.New(j.ParkedAt)}
}

// SettleParkedPayment removes a parked job an operator settled by hand.
// INVALID_ARGUMENT for a malformed order id or a kind other than charge or
// refund, NOT_FOUND when no such job is parked, ABORTED while a retry or
// another settle of it runs.
func (a *Admin) SettleParkedPayment(ctx context.Context, req *ordersv1.SettleParkedPaymentRequest) (*ordersv1.SettleParkedPaymentResponse, error) {
	if err := rpcerr.OrderID("order_id", req.GetOrderId()); err != nil {
		return nil, err
	}
	kind, ok := kindOf(req.GetKind())
	if !ok {
		return nil, rpcerr.Invalid("kind", "must be PAYMENT_JOB_KIND_CHARGE or PAYMENT_JOB_KIND_REFUND")
	}
	j, err := a.m.Settle(ctx, req.GetOrderId(), kind)
	switch {
	case errors.Is(err, ErrNotParked):
		return nil, status.Error(codes.NotFound, "no such parked job")
	case errors.Is(err, ErrJobBusy):
		return nil, status.Error(codes.Aborted, "the parked job is being retried or settled: list it again once that ends")
	case err != nil:
		return nil, rpcerr.ToStatus(ctx, a.log, err)
	}
	// Money moved by hand: ordersd's log says who settled what, as the
	// order's events say who did the rest.
	a.log.WarnContext(ctx, "payments: parked job settled by hand and removed", "kind", j.Kind, "order", j.OrderID,
		"position", j.Position, "last_error", j.LastError, "actor", command.Actor(ctx))
	return &ordersv1.SettleParkedPaymentResponse{Settled: parkedProto(j)}, nil
}

// RetryParkedPayment runs parked jobs again now.
func (a *Admin) RetryParkedPayment(ctx context.Context, req *ordersv1.RetryParkedPaymentRequest) (*ordersv1.RetryParkedPaymentResponse, error) {
	if id := req.GetOrderId(); id != "" {
		if err := rpcerr.OrderID("order_id", id); err != nil {
			return nil, err
		}
	}
	done, again, err := a.m.Retry(ctx, req.GetOrderId())
	if err != nil {
		return nil, rpcerr.ToStatus(ctx, a.log, err)
	}
	return &ordersv1.RetryParkedPaymentResponse{Completed: uint32(done), ParkedAgain: uint32(again)}, nil
}
