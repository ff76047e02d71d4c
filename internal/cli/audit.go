package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/client"
	"github.com/orderstream/orderstream/internal/money"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func (a *app) auditCmd() *cobra.Command {
	c := &cobra.Command{Use: "audit", Short: "Read, export and verify order history"}
	c.AddCommand(a.historyCmd(), a.atCmd(), a.exportCmd(), a.verifyCmd(), a.decodeCmd())
	return c
}

func (a *app) audit() (ordersv1.OrderAuditServiceClient, error) {
	conn, err := a.dial()
	if err != nil {
		return nil, err
	}
	return ordersv1.NewOrderAuditServiceClient(conn), nil
}

// summary picks the fields of an event a person wants on its timeline line.
func summary(e *ordersv1.RecordedEvent, currency string) string {
	ev := e.GetEvent()
	switch {
	case ev.GetOrderCreated() != nil:
		c := ev.GetOrderCreated()
		return fmt.Sprintf("customer=%s currency=%s lines=%d", c.GetCustomerId(), c.GetCurrency(), len(c.GetLines()))
	case ev.GetItemAdded() != nil:
		i := ev.GetItemAdded()
		return fmt.Sprintf("sku=%s qty=%d price=%s", i.GetSku(), i.GetQuantity(), money.Format(i.GetUnitPrice(), currency))
	case ev.GetItemRemoved() != nil:
		return "sku=" + ev.GetItemRemoved().GetSku()
	case ev.GetItemQuantityChanged() != nil:
		i := ev.GetItemQuantityChanged()
		return fmt.Sprintf("sku=%s qty=%d", i.GetSku(), i.GetQuantity())
	case ev.GetShippingAddressSet() != nil:
		return "to=" + address(ev.GetShippingAddressSet().GetShippingAddress())
	case ev.GetOrderPlaced() != nil:
		p := ev.GetOrderPlaced()
		if p.GetTax() != 0 {
			return "total=" + money.Format(p.GetTotal(), currency) + " tax=" + money.Format(p.GetTax(), currency)
		}
		return "total=" + money.Format(p.GetTotal(), currency)
	case ev.GetPaymentAuthorized() != nil:
		p := ev.GetPaymentAuthorized()
		return fmt.Sprintf("ref=%s amount=%s", p.GetPaymentRef(), money.Format(p.GetAmount(), currency))
	case ev.GetPaymentDeclined() != nil:
		p := ev.GetPaymentDeclined()
		return fmt.Sprintf("ref=%s reason=%q", p.GetPaymentRef(), p.GetReason())
	case ev.GetOrderCancelled() != nil:
		return fmt.Sprintf("reason=%q", ev.GetOrderCancelled().GetReason())
	case ev.GetOrderShipped() != nil:
		s := ev.GetOrderShipped()
		return fmt.Sprintf("carrier=%s tracking=%s", s.GetCarrier(), tracking(s.GetTrackingNumber(), s.GetTrackingNumberErased()))
	case ev.GetCustomerForgotten() != nil:
		return "customer=" + ev.GetCustomerForgotten().GetCustomerId()
	case ev.GetRefundIssued() != nil:
		r := ev.GetRefundIssued()
		return fmt.Sprintf("ref=%s amount=%s payment=%s", r.GetRefundRef(), money.Format(r.GetAmount(), currency), r.GetPaymentRef())
	default:
		return ""
	}
}

func (a *app) historyCmd() *cobra.Command {
	c := &cobra.Command{
		Use: "history ORDER", Short: "Show an order's events as a timeline", Args: cobra.ExactArgs(1),
		Example: `  ordersctl audit history 7d3f0c2a-...
  ordersctl audit history 7d3f0c2a-... -o json | jq '.events[].type'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			client, err := a.audit()
			if err != nil {
				return err
			}
			var events []*ordersv1.RecordedEvent
			req := &ordersv1.GetOrderHistoryRequest{OrderId: args[0], PageSize: 1000}
			for {
				res, err := retried(a, cmd.Context(), func(ctx context.Context) (*ordersv1.GetOrderHistoryResponse, error) {
					return client.GetOrderHistory(ctx, req)
				})
				if err != nil {
					return err
				}
				events = append(events, res.GetEvents()...)
				if res.GetNextPageToken() == "" {
					break
				}
				req.PageToken = res.GetNextPageToken()
			}
			if a.output == "json" {
				return a.printJSON(&ordersv1.GetOrderHistoryResponse{Events: events})
			}
			currency := ""
			if len(events) > 0 {
				currency = events[0].GetEvent().GetOrderCreated().GetCurrency()
			}
			w := table(a.io.Out)
			fmt.Fprintf(w, "VERSION\tTIME\tACTOR\t%s\tDETAILS\n", a.plain("EVENT"))
			for _, e := range events {
				// To the nanosecond, as stored: a time copied from here into
				// `audit at --time` then includes the event it shows.
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", e.GetVersion(), tsExact(e.GetOccurredAt()), e.GetActor(), a.colour("36", e.GetType()), summary(e, currency))
			}
			return w.Flush()
		},
	}
	return c
}

func (a *app) atCmd() *cobra.Command {
	var version uint32
	var at string
	c := &cobra.Command{
		Use: "at ORDER", Short: "Show an order's state at a revision or a time, folded from its history", Args: cobra.ExactArgs(1),
		Example: "  ordersctl audit at 7d3f0c2a-... --revision 3\n  ordersctl audit at 7d3f0c2a-... --time 2026-11-24T10:00:00Z",
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &ordersv1.GetOrderAtRequest{OrderId: args[0]}
			switch {
			case version > 0 && at != "":
				return usagef("give --revision or --time, not both")
			case version > 0:
				req.Point = &ordersv1.GetOrderAtRequest_Version{Version: version}
			case at != "":
				t, err := parseTime("time", at)
				if err != nil {
					return err
				}
				req.Point = &ordersv1.GetOrderAtRequest_Time{Time: t}
			default:
				return usagef("give --revision N or --time T")
			}
			return unary(a, cmd, func(ctx context.Context, conn *grpc.ClientConn) (*ordersv1.GetOrderAtResponse, error) {
				return ordersv1.NewOrderAuditServiceClient(conn).GetOrderAt(ctx, req)
			}, func(res *ordersv1.GetOrderAtResponse) error { return a.printOrder(res.GetOrder(), 0) })
		},
	}
	c.Flags().Uint32Var(&version, "revision", 0, "state after this many events (1 = as created)")
	c.Flags().StringVar(&at, "time", "", "state as of this RFC 3339 time")
	return c
}

func (a *app) exportCmd() *cobra.Command {
	var from uint64
	var since, file string
	var types, orders []string
	var follow, appendTo bool
	c := &cobra.Command{
		Use:   "export",
		Short: "Export the event log as JSON lines",
		Long: `Writes one JSON object per event (the proto3 JSON of RecordedEvent) to
stdout or --file. Without --follow it ends at the log's head at the time of
the call; with --follow it keeps streaming new events until interrupted
(Ctrl-C or SIGTERM), which is the normal way to stop it: whatever was
received is written out and the exit status is 0.

A failure to write the output (a full disk, a closed pipe) ends the command
with exit status 5. The stream is not retried: a server that goes away
(UNAVAILABLE) ends it with exit status 4, and --from one past the last
position written resumes it (with --append, into the same --file, which
otherwise starts afresh).`,
		Example: `  ordersctl audit export > events.jsonl
  ordersctl audit export --file events.jsonl --since 2026-11-24T00:00:00Z
  ordersctl audit export --file events.jsonl --from 1043 --append   # resume a cut-off export
  ordersctl audit export --type OrderPlaced --order 7d3f0c2a-... --follow`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if from > 0 && since != "" {
				// The service starts at the time and ignores the position.
				return usagef("--from and --since: give one of them")
			}
			req := &ordersv1.StreamEventsRequest{FromPosition: from, EventTypes: types, OrderIds: orders, Follow: follow}
			if req.FromTime, err = parseTime("since", since); err != nil {
				return err
			}
			if appendTo && file == "" {
				return usagef("--append adds to --file: give one")
			}
			return a.export(cmd.Context(), req, file, appendTo)
		},
	}
	c.Flags().Uint64Var(&from, "from", 0, "start at this log position")
	c.Flags().StringVar(&since, "since", "", "start at this RFC 3339 time")
	c.Flags().StringArrayVar(&types, "type", nil, "only this event type (repeatable)")
	c.Flags().StringArrayVar(&orders, "order", nil, "only this order (repeatable)")
	c.Flags().BoolVar(&follow, "follow", false, "keep streaming new events until interrupted (then exit 0)")
	c.Flags().StringVar(&file, "file", "", "write to this file instead of stdout")
	c.Flags().BoolVar(&appendTo, "append", false, "add to --file rather than replace it (to resume a cut-off export with --from)")
	return c
}

// export writes the events req selects to file (stdout when empty; added
// to it with appendTo) as JSON lines. A follow the user interrupts through
// ctx ends without error.
func (a *app) export(ctx context.Context, req *ordersv1.StreamEventsRequest, file string, appendTo bool) (err error) {
	client, err := a.audit()
	if err != nil {
		return err
	}
	// A follow ends when the user interrupts it: that is success.
	stopped := func(err error) bool {
		return req.GetFollow() && status.Code(err) == codes.Canceled && ctx.Err() != nil
	}
	stream, err := client.StreamEvents(a.streamCtx(ctx), req)
	if stopped(err) {
		return nil
	}
	if err != nil {
		return err
	}
	// The first answer comes before --file is opened: a server that
	// refuses or cannot be reached, or a follow stopped before any event
	// came, must leave an existing file as it was, not emptied.
	first, ferr := stream.Recv()
	if stopped(ferr) {
		return nil
	}
	if ferr != nil && !errors.Is(ferr, io.EOF) {
		return ferr
	}
	out := a.io.Out
	if file != "" {
		flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		if appendTo {
			flags = os.O_WRONLY | os.O_CREATE | os.O_APPEND
		}
		f, err := os.OpenFile(file, flags, 0o666)
		if err != nil {
			return usagef("--file: %v", err)
		}
		// A close error can be the first sign that the data never
		// reached the disk, so it fails the export too.
		defer func() {
			if cerr := f.Close(); cerr != nil && err == nil {
				err = writeError{cerr}
			}
		}()
		out = f
	}
	return writeEvents(stream, first, ferr, bufio.NewWriter(out), req.GetFollow(), stopped)
}

// writeEvents writes each event of stream to bw as a JSON line, starting
// with the answer already received (res, err), until the end of the log or
// a follow the user stopped; a follow flushes each line as it comes.
func writeEvents(stream grpc.ServerStreamingClient[ordersv1.StreamEventsResponse], res *ordersv1.StreamEventsResponse, err error, bw *bufio.Writer, follow bool, stopped func(error) bool) error {
	line := protojson.MarshalOptions{EmitUnpopulated: true}
	for ; ; res, err = stream.Recv() {
		if errors.Is(err, io.EOF) || stopped(err) {
			if err := bw.Flush(); err != nil {
				return writeError{err}
			}
			return nil
		}
		if err != nil {
			// What was received is written out whole before the error:
			// the buffer may have written part of a line already, and a
			// resumed export (--from one past the last position written)
			// must find only whole lines before it.
			if ferr := bw.Flush(); ferr != nil {
				return writeError{ferr}
			}
			return err
		}
		b, err := line.Marshal(res.GetEvent())
		if err != nil {
			return err
		}
		b = append(b, '\n')
		if _, err := bw.Write(b); err != nil {
			return writeError{err}
		}
		if follow {
			if err := bw.Flush(); err != nil {
				return writeError{err}
			}
		}
	}
}

// writeError is a failure to write the command's output; it exits 5 with
// one line naming it.
type writeError struct{ err error }

func (e writeError) Error() string { return "writing the output: " + e.err.Error() }
func (e writeError) Unwrap() error { return e.err }

// written is the error of a print to the output, as a writeError: a
// command whose answer reached no one (stdout closed, a full disk) is no
// success, which a script reading the answer would take it for.
func written(_ int, err error) error {
	if err != nil {
		return writeError{err}
	}
	return nil
}

func (a *app) verifyCmd() *cobra.Command {
	var all bool
	c := &cobra.Command{
		Use:   "verify [ORDER]",
		Short: "Verify hash chains; exits 6 if any is broken",
		Example: `  ordersctl audit verify 7d3f0c2a-...
  ordersctl audit verify --all`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) == 1) {
				return usagef("give an ORDER or --all")
			}
			client, err := a.audit()
			if err != nil {
				return err
			}
			if all {
				return a.verifyLog(cmd.Context(), client)
			}
			return a.verifyOrder(cmd.Context(), client, args[0])
		},
	}
	c.Flags().BoolVar(&all, "all", false, "verify every order in the log")
	return c
}

// verifyOrder verifies one order's chain and prints the verdict;
// errBrokenChain when it is broken.
func (a *app) verifyOrder(ctx context.Context, client ordersv1.OrderAuditServiceClient, id string) error {
	res, err := retried(a, ctx, func(ctx context.Context) (*ordersv1.VerifyOrderResponse, error) {
		return client.VerifyOrder(ctx, &ordersv1.VerifyOrderRequest{OrderId: id})
	})
	if err != nil {
		return err
	}
	if a.output == "json" {
		err = a.printJSON(res)
	} else {
		err = a.printVerdict(res)
	}
	if err == nil && !res.GetOk() {
		err = errBrokenChain
	}
	return err
}

// verifyLog verifies every order's chain, showing progress, each broken
// order and the summary; errBrokenChain when any is broken.
func (a *app) verifyLog(ctx context.Context, svc ordersv1.OrderAuditServiceClient) error {
	stream, err := svc.VerifyLog(a.streamCtx(ctx), &ordersv1.VerifyLogRequest{})
	if err != nil {
		return err
	}
	bar := newProgress(a, "verifying")
	broken := 0
	summarised := false
	for {
		res, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			if summarised {
				break
			}
			// The summary is the stream's last message: a stream that
			// ended without it (a proxy that cut it, a server that
			// stopped) verified part of the log only, no success.
			err = status.Error(codes.Unavailable, "the verification ended before its summary: only part of the log was checked")
		}
		if err != nil {
			bar.Done()
			if broken > 0 {
				// What was verified is broken, whatever the rest is:
				// exit 6, with why the rest was not verified.
				return fmt.Errorf("%w in %d order(s); then the verification stopped: %s", errBrokenChain, broken, client.Message(err))
			}
			return err
		}
		switch r := res.GetResult().(type) {
		case *ordersv1.VerifyLogResponse_Progress:
			bar.Update(r.Progress.GetPosition(), r.Progress.GetHead(), r.Progress.GetEventsChecked())
		case *ordersv1.VerifyLogResponse_Broken:
			broken++
			bar.Clear()
			err = a.printBroken(r.Broken)
		case *ordersv1.VerifyLogResponse_Summary:
			bar.Done()
			summarised = true
			err = a.printVerifySummary(r.Summary)
		}
		if err != nil {
			return err
		}
	}
	bar.Done()
	if broken > 0 {
		return fmt.Errorf("%w in %d order(s)", errBrokenChain, broken)
	}
	return nil
}

// printBroken prints the verdict on one broken order.
func (a *app) printBroken(v *ordersv1.VerifyOrderResponse) error {
	if a.output == "json" {
		return a.printJSON(v)
	}
	return a.printVerdict(v)
}

// printVerifySummary prints what a verification of the log checked.
func (a *app) printVerifySummary(s *ordersv1.VerifyLogProgress) error {
	if a.output == "json" {
		return a.printJSON(s)
	}
	return written(fmt.Fprintf(a.io.Out, "checked %d events in %d orders: %d broken\n", s.GetEventsChecked(), s.GetOrdersChecked(), s.GetOrdersBroken()))
}

func (a *app) decodeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "decode",
		Short: "Print a stored event payload (protobuf, from stdin) as JSON",
		Long: `Reads one event payload as the log stores it (the protobuf encoding of
orders.v1.Event) from stdin and prints it as JSON, amounts as with -o json.
It needs no server: it is meant for tools that read the ORDERS stream
directly, such as the nats CLI's --translate. A payload that is not an event
exits 1.`,
		Example: `  nats stream get ORDERS --last-for orders.7d3f0c2a-... --translate 'ordersctl audit decode'`,
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			in := a.io.In
			if in == nil {
				in = strings.NewReader("")
			}
			b, err := io.ReadAll(io.LimitReader(in, maxPayload+1))
			if err != nil {
				return err
			}
			if len(b) > maxPayload {
				return usagef("the payload is over %d bytes: not an event", maxPayload)
			}
			var ev ordersv1.Event
			if err := proto.Unmarshal(b, &ev); err != nil || ev.GetEvent() == nil {
				return usagef("stdin holds no orders.v1.Event payload")
			}
			return a.printJSON(&ev)
		},
	}
}

// maxPayload bounds what decode reads: NATS's largest message.
const maxPayload = 64 << 20

// printVerdict prints one order's verdict; the error of writing it (a
// verdict that reached no one is no success).
func (a *app) printVerdict(v *ordersv1.VerifyOrderResponse) error {
	if v.GetOk() {
		return written(fmt.Fprintf(a.io.Out, "%s  %s  %d events\n", v.GetOrderId(), a.colour("32", "ok"), v.GetEventsChecked()))
	}
	b := v.GetFirstBreak()
	kind := strings.ToLower(strings.TrimPrefix(b.GetKind().String(), "CHAIN_BREAK_KIND_"))
	return written(fmt.Fprintf(a.io.Out, "%s  %s  at position %d (version %d): %s: %s\n", v.GetOrderId(), a.colour("31", "BROKEN"), b.GetPosition(), b.GetVersion(), kind, b.GetDetail()))
}
