package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/money"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// parseStatus reads a --status flag (draft, placed, ...); empty is any.
func parseStatus(s string) (ordersv1.OrderStatus, error) {
	if s == "" {
		return ordersv1.OrderStatus_ORDER_STATUS_UNSPECIFIED, nil
	}
	v, ok := ordersv1.OrderStatus_value["ORDER_STATUS_"+strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, usagef("--status %q: want draft, placed, paid, payment_declined, shipped, delivered or cancelled", s)
	}
	return ordersv1.OrderStatus(v), nil
}

// watchMessage is both watch RPCs' answers.
type watchMessage interface {
	proto.Message
	GetOrder() *ordersv1.Order
	GetPosition() uint64
	GetEventType() string
	GetActor() string
}

func (a *app) watchCmd() *cobra.Command {
	var customer, statusFlag string
	var from uint64
	c := &cobra.Command{
		Use:   "watch [ORDER]",
		Short: "Follow an order, or a customer's orders, as they change",
		Long: `Prints one line per change until interrupted (Ctrl-C, then exit 0):
position, order, status, total, the event that made the change and who caused
it. With an order id the first line is the order's current state ("current").
Without one it follows every order matching --customer and --status. -o json
prints one JSON object per line (the RPC's answers), including, without an
order id, a first one holding only the position the watch starts after.

A watcher that falls behind is cut off by the server; ordersctl then resumes
from the last position it printed, so no change is missed or printed twice.
--from resumes an earlier watch after the position it printed last.`,
		Example: `  ordersctl orders watch 7d3f0c2a-...
  ordersctl orders watch --customer cust-42 -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := parseStatus(statusFlag)
			if err != nil {
				return err
			}
			if len(args) == 1 && (customer != "" || st != ordersv1.OrderStatus_ORDER_STATUS_UNSPECIFIED) {
				return usagef("--customer and --status filter the orders watched without an order id")
			}
			conn, err := a.dial()
			if err != nil {
				return err
			}
			q := ordersv1.NewOrderQueryServiceClient(conn)
			open := func(ctx context.Context, from uint64) (func() (watchMessage, error), error) {
				if len(args) == 1 {
					s, err := q.WatchOrder(ctx, &ordersv1.WatchOrderRequest{OrderId: args[0], FromPosition: from})
					return recvWatch(s), err
				}
				s, err := q.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{CustomerId: customer, Status: st, FromPosition: from})
				return recvWatch(s), err
			}
			return a.follow(cmd.Context(), from, open)
		},
	}
	c.Flags().StringVar(&customer, "customer", "", "follow this customer's orders")
	c.Flags().StringVar(&statusFlag, "status", "", "follow orders entering or leaving this status (draft, placed, paid, ...)")
	c.Flags().Uint64Var(&from, "from", 0, "resume after this log position")
	return c
}

func recvWatch[M any, P interface {
	*M
	watchMessage
}](s grpc.ServerStreamingClient[M]) func() (watchMessage, error) {
	return func() (watchMessage, error) {
		m, err := s.Recv()
		if err != nil {
			return nil, err
		}
		return P(m), nil
	}
}

// follow prints a watch until the user interrupts it, resuming after the
// last printed position when the server cuts the watcher off for falling
// behind.
func (a *app) follow(ctx context.Context, from uint64, open func(context.Context, uint64) (func() (watchMessage, error), error)) error {
	sctx := a.streamCtx(ctx)
	interrupted := func(err error) bool { return status.Code(err) == codes.Canceled && ctx.Err() != nil }
	for {
		next, err := open(sctx, from)
		for err == nil {
			var m watchMessage
			if m, err = next(); err != nil {
				break
			}
			if err = a.printChange(m); err != nil {
				return writeError{err}
			}
			from = m.GetPosition()
		}
		switch {
		case interrupted(err):
			return nil
		case status.Code(err) == codes.ResourceExhausted && from > 0:
			// Cut off for falling behind (or the server's streams are
			// all taken): resume shortly.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(200 * time.Millisecond):
			}
		default:
			return err
		}
	}
}

func (a *app) printChange(m watchMessage) error {
	if a.output == "json" {
		return a.printJSON(m)
	}
	o := m.GetOrder()
	if o == nil {
		return nil
	}
	event, actor := m.GetEventType(), m.GetActor()
	if event == "" {
		event = "current"
	}
	if actor == "" {
		actor = "-"
	}
	_, err := fmt.Fprintf(a.io.Out, "%d\t%s\t%s\t%s\t%s\t%s\n", m.GetPosition(), o.GetOrderId(), a.statusText(o.GetStatus()),
		money.Format(o.GetTotal(), o.GetCurrency()), event, actor)
	return err
}
