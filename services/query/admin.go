package query

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/rpcerr"
	"github.com/orderstream/orderstream/projections"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Rebuilder is what the admin service needs of the projection runner.
type Rebuilder interface {
	Projection
	Rebuild(ctx context.Context, progress func(projections.Progress)) error
	Rebuilding() bool
	DeadLettered() uint64
}

// Head reports the log head.
type Head interface {
	Head(ctx context.Context) (uint64, error)
}

// Forgetter erases a customer's personal data (command.Service does).
type Forgetter interface {
	// ForgetCustomer answers the log position of the CustomerForgotten
	// event, or a gRPC status error.
	ForgetCustomer(ctx context.Context, customerID, requestID string) (position uint64, err error)
}

// Admin implements ordersv1.OrderAdminServiceServer.
type Admin struct {
	ordersv1.UnimplementedOrderAdminServiceServer
	r      Rebuilder
	head   Head
	log    *slog.Logger
	forget Forgetter
	node   string
}

// AdminOption configures an Admin. An option given a value it does not
// accept makes NewAdmin fail with an error wrapping ErrInvalidOption.
type AdminOption func(*Admin) error

// WithNode names this query node in the rebuild's progress and the
// projection's status (their node fields), so an operator who reached it
// through a gateway knows whose read model it is. Invalid: empty.
func WithNode(name string) AdminOption {
	return func(a *Admin) error {
		if name == "" {
			return fmt.Errorf("%w: WithNode(\"\")", ErrInvalidOption)
		}
		a.node = name
		return nil
	}
}

// WithForgetter serves ForgetCustomer with f; without it ForgetCustomer
// answers UNIMPLEMENTED. Invalid: nil.
func WithForgetter(f Forgetter) AdminOption {
	return func(a *Admin) error {
		if f == nil {
			return fmt.Errorf("%w: WithForgetter(nil)", ErrInvalidOption)
		}
		a.forget = f
		return nil
	}
}

// NewAdmin returns the admin service; a nil log logs to slog.Default(). It
// fails with an error wrapping ErrInvalidOption when an option is invalid.
func NewAdmin(r Rebuilder, head Head, log *slog.Logger, opts ...AdminOption) (*Admin, error) {
	a := &Admin{r: r, head: head, log: rpcerr.DefaultLogger(log)}
	for _, o := range opts {
		if err := o(a); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// ForgetCustomer erases a customer's personal data (see Forgetter). The
// read model shows it erased once it reaches the answered position.
func (a *Admin) ForgetCustomer(ctx context.Context, req *ordersv1.ForgetCustomerRequest) (*ordersv1.ForgetCustomerResponse, error) {
	if a.forget == nil {
		return nil, status.Error(codes.Unimplemented, "forgetting customers is not served by this node")
	}
	pos, err := a.forget.ForgetCustomer(ctx, req.GetCustomerId(), req.GetRequestId())
	if err != nil {
		return nil, rpcerr.ToStatus(ctx, a.log, err)
	}
	return &ordersv1.ForgetCustomerResponse{Position: pos}, nil
}

// RebuildReadModel rebuilds the read model, streaming progress. The rebuild
// is bound to the call: if the client goes away it is cancelled, and the
// live read model stays as it was. FAILED_PRECONDITION when one already
// runs; UNAVAILABLE when the read model's runner stopped before the swap
// was done (its node shutting down).
func (a *Admin) RebuildReadModel(_ *ordersv1.RebuildReadModelRequest, stream grpc.ServerStreamingServer[ordersv1.RebuildReadModelResponse]) error {
	ctx := stream.Context()
	var sendErr error
	err := a.r.Rebuild(ctx, func(p projections.Progress) {
		if sendErr != nil {
			return
		}
		sendErr = stream.Send(&ordersv1.RebuildReadModelResponse{
			EventsDone: p.EventsDone, TargetPosition: p.Target, Position: p.Position,
			EventsPerSecond: p.Rate, Percent: p.Percent, Swapped: p.Swapped, Node: a.node,
		})
	})
	if errors.Is(err, projections.ErrRebuildRunning) {
		return status.Error(codes.FailedPrecondition, "a rebuild is already running")
	}
	if errors.Is(err, projections.ErrRunnerStopped) {
		// The read model's runner stopped (its node shutting down): not
		// the client's leaving, nor this server's fault. Retried, on a
		// node that runs, the rebuild goes through.
		return status.Error(codes.Unavailable, "the read model stopped (the server is shutting down); retry the rebuild")
	}
	if err != nil {
		return rpcerr.ToStatus(ctx, a.log, err)
	}
	return sendErr
}

// GetProjectionStatus reports the read model's position against the log.
func (a *Admin) GetProjectionStatus(ctx context.Context, _ *ordersv1.GetProjectionStatusRequest) (*ordersv1.GetProjectionStatusResponse, error) {
	head, err := a.head.Head(ctx)
	if err != nil {
		return nil, rpcerr.ToStatus(ctx, a.log, err)
	}
	dead, err := a.r.ReadModel().DeadLettered(ctx)
	if err != nil {
		return nil, rpcerr.ToStatus(ctx, a.log, err)
	}
	return &ordersv1.GetProjectionStatusResponse{Position: a.r.Position(), Head: head, DeadLettered: dead, Rebuilding: a.r.Rebuilding(), Node: a.node}, nil
}
