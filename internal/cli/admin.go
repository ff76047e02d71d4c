package cli

import (
	"context"
	"fmt"
	"strings"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/client"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

func (a *app) adminCmd() *cobra.Command {
	c := &cobra.Command{Use: "admin", Short: "Operate ordersd: read-model rebuilds, health, forgetting customers"}
	c.AddCommand(a.rebuildCmd(), a.healthCmd(), a.parkedCmd(), a.deadlinesCmd(), a.forgetCustomerCmd())
	return c
}

func (a *app) forgetCustomerCmd() *cobra.Command {
	var requestID string
	c := &cobra.Command{
		Use:   "forget-customer CUSTOMER",
		Short: "Erase a customer's personal data for good (crypto-shredding)",
		Long: "Destroys the customer's data key: the shipping addresses and tracking numbers of all their orders\n" +
			"read as [erased] from then on, everywhere. Amounts, lines, statuses and times stay, and the\n" +
			"audit chain still verifies. Cannot be undone. Prints the log position of the erasure.",
		Args:    cobra.ExactArgs(1),
		Example: "  ordersctl admin forget-customer cust-42 --request-id forget-cust-42",
		RunE: func(cmd *cobra.Command, args []string) error {
			return unary(a, cmd, func(ctx context.Context, conn *grpc.ClientConn) (*ordersv1.ForgetCustomerResponse, error) {
				if requestID == "" {
					requestID = a.madeRequestID()
				}
				return ordersv1.NewOrderAdminServiceClient(conn).ForgetCustomer(ctx, &ordersv1.ForgetCustomerRequest{CustomerId: args[0], RequestId: requestID})
			}, func(res *ordersv1.ForgetCustomerResponse) error {
				return written(fmt.Fprintf(a.io.Out, "customer %s forgotten at position %d\n", args[0], res.GetPosition()))
			})
		},
	}
	c.Flags().StringVar(&requestID, "request-id", "", "idempotency key; a retry with the same one answers the same position (default: a new UUID)")
	return c
}

func (a *app) parkedCmd() *cobra.Command {
	c := &cobra.Command{Use: "parked", Short: "Payment jobs parked after their retries"}
	var limit int32
	list := &cobra.Command{
		Use: "list", Short: "List parked payment jobs, oldest first", Args: cobra.NoArgs,
		Example: "  ordersctl admin parked list\n  ordersctl admin parked list --limit 1000 -o json",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return unary(a, cmd, func(ctx context.Context, conn *grpc.ClientConn) (*ordersv1.ListParkedPaymentsResponse, error) {
				return ordersv1.NewPaymentAdminServiceClient(conn).ListParkedPayments(ctx, &ordersv1.ListParkedPaymentsRequest{Limit: limit})
			}, func(res *ordersv1.ListParkedPaymentsResponse) error {
				w := table(a.io.Out)
				fmt.Fprintln(w, "ORDER\tKIND\tPOSITION\tATTEMPTS\tPARKED\tLAST ERROR")
				for _, p := range res.GetParked() {
					kind := strings.ToLower(strings.TrimPrefix(p.GetKind().String(), "PAYMENT_JOB_KIND_"))
					fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\t%s\n", p.GetOrderId(), kind, p.GetPosition(), p.GetAttempts(), ts(p.GetParkedAt()), p.GetLastError())
				}
				if err := w.Flush(); err != nil {
					return err
				}
				if more := int(res.GetParkedCount()) - len(res.GetParked()); more > 0 {
					// On stderr, as the other lists' hints: stdout holds rows only.
					fmt.Fprintf(a.io.Err, "(%d more parked; --limit lists up to 1000)\n", more)
				}
				return nil
			})
		},
	}
	list.Flags().Int32Var(&limit, "limit", 0, "list at most this many, 1-1000 (default 100)")
	c.AddCommand(list, &cobra.Command{
		Use: "retry [ORDER]", Short: "Retry parked payment jobs now (one order's, or all)", Args: cobra.MaximumNArgs(1),
		Example: "  ordersctl admin parked retry 7d3f0c2a-...\n  ordersctl admin parked retry          # every parked job",
		RunE: func(cmd *cobra.Command, args []string) error {
			tries := 0
			return unary(a, cmd, func(ctx context.Context, conn *grpc.ClientConn) (*ordersv1.RetryParkedPaymentResponse, error) {
				tries++
				req := &ordersv1.RetryParkedPaymentRequest{}
				if len(args) == 1 {
					req.OrderId = args[0]
				}
				return ordersv1.NewPaymentAdminServiceClient(conn).RetryParkedPayment(ctx, req)
			}, func(res *ordersv1.RetryParkedPaymentResponse) error {
				if err := written(fmt.Fprintf(a.io.Out, "completed %d, parked again %d\n", res.GetCompleted(), res.GetParkedAgain())); err != nil {
					return err
				}
				if tries > 1 {
					// The try whose answer was lost (UNAVAILABLE) may
					// have run jobs before it stopped: this answer counts
					// only what the last try ran.
					fmt.Fprintln(a.io.Err, "ordersctl: an earlier try that got no answer may have completed or parked jobs too; see admin parked list")
				}
				return nil
			})
		},
	}, a.settleCmd())
	return c
}

// settleCmd removes a parked job an operator settled by hand.
func (a *app) settleCmd() *cobra.Command {
	var kind string
	c := &cobra.Command{
		Use:   "settle ORDER --kind charge|refund",
		Short: "Remove a parked job whose money was settled by hand with the provider",
		Long: "Remove an order's parked charge or refund job without running it, once its money was settled by hand with the\n" +
			"payment provider: a job parked because the customer may have paid or been refunded twice stays parked on every retry.",
		Args:    cobra.ExactArgs(1),
		Example: "  ordersctl admin parked settle 7d3f0c2a-... --kind refund",
		RunE: func(cmd *cobra.Command, args []string) error {
			k, ok := map[string]ordersv1.PaymentJobKind{"charge": ordersv1.PaymentJobKind_PAYMENT_JOB_KIND_CHARGE,
				"refund": ordersv1.PaymentJobKind_PAYMENT_JOB_KIND_REFUND}[kind]
			if !ok {
				return usagef("--kind must be charge or refund, not %q", kind)
			}
			tries := 0
			return unary(a, cmd, func(ctx context.Context, conn *grpc.ClientConn) (*ordersv1.SettleParkedPaymentResponse, error) {
				tries++
				res, err := ordersv1.NewPaymentAdminServiceClient(conn).SettleParkedPayment(ctx, &ordersv1.SettleParkedPaymentRequest{OrderId: args[0], Kind: k})
				if status.Code(err) == codes.NotFound && tries > 1 {
					// A settle is not idempotent: the try whose answer
					// was lost (UNAVAILABLE) may have removed the job.
					return nil, status.Error(codes.NotFound, "the job is not parked now: the try whose answer was lost may have settled it")
				}
				return res, err
			}, func(res *ordersv1.SettleParkedPaymentResponse) error {
				p := res.GetSettled()
				return written(fmt.Fprintf(a.io.Out, "settled the %s job of %s, parked at position %d\n", kind, p.GetOrderId(), p.GetPosition()))
			})
		},
	}
	c.Flags().StringVar(&kind, "kind", "", "the job's kind: charge or refund (required)")
	return c
}

func (a *app) deadlinesCmd() *cobra.Command {
	c := &cobra.Command{Use: "deadlines", Short: "Payment timeouts and shipping SLAs kept in the log"}
	var limit int32
	list := &cobra.Command{
		Use: "list [ORDER]", Short: "List pending deadlines, fired ones not enforced yet, and overdue shipments, soonest first", Args: cobra.MaximumNArgs(1),
		Example: "  ordersctl admin deadlines list\n  ordersctl admin deadlines list 7d3f0c2a-... -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			return unary(a, cmd, func(ctx context.Context, conn *grpc.ClientConn) (*ordersv1.ListDeadlinesResponse, error) {
				req := &ordersv1.ListDeadlinesRequest{Limit: limit}
				if len(args) == 1 {
					req.OrderId = args[0]
				}
				return ordersv1.NewDeadlineAdminServiceClient(conn).ListDeadlines(ctx, req)
			}, func(res *ordersv1.ListDeadlinesResponse) error {
				w := table(a.io.Out)
				fmt.Fprintf(w, "ORDER\tDEADLINE\tDUE\t%s\tSINCE POSITION\n", a.plain("STATE"))
				for _, d := range res.GetDeadlines() {
					kind := strings.ToLower(strings.TrimPrefix(d.GetKind().String(), "DEADLINE_KIND_"))
					state := a.plain("pending")
					switch {
					case d.GetOverdue():
						state = a.colour("31", "overdue")
					case d.GetFired():
						// Due, and not enforced yet: retried until it is.
						state = a.colour("33", "fired")
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\n", d.GetOrderId(), kind, ts(d.GetDueAt()), state, d.GetPosition())
				}
				if err := w.Flush(); err != nil {
					return err
				}
				if res.GetTruncated() {
					fmt.Fprintf(a.io.Err, "more deadlines than --limit %d\n", len(res.GetDeadlines()))
				}
				return nil
			})
		},
	}
	list.Flags().Int32Var(&limit, "limit", 0, "at most this many (server default 100, at most 1000)")
	c.AddCommand(list)
	return c
}

func (a *app) rebuildCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rebuild",
		Short: "Rebuild the read model from the log without downtime",
		Long: `Replays the whole log into a new read model beside the live one, which
keeps serving queries, and swaps it in once caught up. A progress bar (events/s,
ETA) is drawn on stderr when stderr is a terminal; with -o json each progress
message is printed to stdout as a JSON line instead.`,
		Example: "  ordersctl admin rebuild\n  ordersctl admin rebuild -o json | tail -1",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, err := a.dial()
			if err != nil {
				return err
			}
			bar := newProgress(a, "rebuilding")
			last, err := client.Rebuild(a.streamCtx(cmd.Context()), conn, func(res *ordersv1.RebuildReadModelResponse) error {
				if a.output == "json" {
					return a.printJSON(res)
				}
				bar.Update(res.GetPosition(), res.GetTargetPosition(), res.GetEventsDone())
				return nil
			})
			bar.Done()
			if err != nil {
				return err
			}
			if a.output != "json" && last != nil {
				return written(fmt.Fprintln(a.io.Out, client.RebuildSummary(last)))
			}
			return nil
		},
	}
}

// services are the names whose health ordersd reports; "" is the server as
// a whole.
var services = []string{"", ordersv1.OrderCommandService_ServiceDesc.ServiceName, ordersv1.OrderQueryService_ServiceDesc.ServiceName,
	ordersv1.OrderAuditService_ServiceDesc.ServiceName, ordersv1.OrderAdminService_ServiceDesc.ServiceName,
	ordersv1.PaymentAdminService_ServiceDesc.ServiceName, ordersv1.DeadlineAdminService_ServiceDesc.ServiceName}

func (a *app) healthCmd() *cobra.Command {
	return &cobra.Command{
		Use: "health", Short: "Show the gRPC health of each service; exits 4 unless every service the server runs serves", Args: cobra.NoArgs,
		Example: "  ordersctl admin health\n  ordersctl admin health --addr orders.internal:50051 --ca ca.pem",
		RunE: func(cmd *cobra.Command, _ []string) error {
			conn, err := a.dial()
			if err != nil {
				return err
			}
			client := healthpb.NewHealthClient(conn)
			result := map[string]any{}
			w := table(a.io.Out)
			fmt.Fprintln(w, "SERVICE\tSTATUS")
			var firstErr error
			// One deadline for every check: they are one answer, and
			// against a server that does not answer, each with a
			// --timeout of its own took seven of them.
			ctx, cancel := a.callCtx(cmd.Context())
			defer cancel()
			for _, s := range services {
				res, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: s})
				st := res.GetStatus().String()
				if err != nil {
					st = "UNKNOWN (" + status.Code(err).String() + ")"
					if status.Code(err) != codes.NotFound && firstErr == nil {
						// Whatever kept it from answering, the service
						// does not serve: exit 4, as the help says.
						firstErr = status.Error(codes.Unavailable, name(s)+": "+status.Code(err).String()+": "+status.Convert(err).Message())
					}
				} else if res.GetStatus() != healthpb.HealthCheckResponse_SERVING && firstErr == nil {
					firstErr = status.Error(codes.Unavailable, fmt.Sprintf("%s is %s", name(s), st))
				}
				result[name(s)] = st
				fmt.Fprintf(w, "%s\t%s\n", name(s), st)
			}
			if a.output == "json" {
				v, err := structpb.NewStruct(result)
				if err != nil {
					return err
				}
				if err := a.printJSON(v); err != nil {
					return err
				}
			} else if err := w.Flush(); err != nil {
				return err
			}
			return firstErr
		},
	}
}

func name(s string) string {
	if s == "" {
		return "(server)"
	}
	return s
}
