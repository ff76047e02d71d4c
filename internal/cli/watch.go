package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/backoff"
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
	var from, minPos uint64
	var wait time.Duration
	c := &cobra.Command{
		Use:   "watch [ORDER]",
		Short: "Follow an order, or a customer's orders, as they change",
		Long: `Prints one line per change until interrupted (Ctrl-C, then exit 0):
position, order, status, total, the event that made the change and who caused
it. With an order id the first line is the order's current state ("current").
Without one it follows every order matching --customer and --status. -o json
prints one JSON object per line (the RPC's answers), including, without an
order id and without --from, a first one holding only the position the watch
starts after.

A watcher that falls behind is cut off by the server; ordersctl then resumes
from the last position it printed, so no change is missed or printed twice.
So it does when the server goes away (UNAVAILABLE: a node shutting down or
restarting): it reconnects after growing, jittered waits and resumes after
the last position it received (a node shutting down may send one it does
not print), or gives up with exit 4 once --timeout has
passed without the server taking the watch back. Without an order id, a
watch the server can no longer follow from where it was (the position is
older than the changes it keeps: after its node crashed, or 10,000
changes of other orders later; or it ends the watch because a rebuilt read model
moved past changes the watch had not seen) lists the matching orders as
they are now ("current"
lines; with -o json, answers without an eventType) and follows from
there, saying so on stderr: the changes between are not printed, and an
order that left --status meanwhile gets no line. A --from the server
cannot serve is refused.
--from resumes an earlier watch after the position it printed last; when that
position holds several changes (a customer's erasure changes each of the
customer's orders at one position), those are printed again.`,
		Example: `  ordersctl orders watch 7d3f0c2a-...
  ordersctl orders watch 7d3f0c2a-... --min-position 42   # from your own write on
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
			if err := checkMaxWait(minPos, wait); err != nil {
				return err
			}
			read := consistency(minPos, wait)
			conn, err := a.dial()
			if err != nil {
				return err
			}
			q := ordersv1.NewOrderQueryServiceClient(conn)
			var resync func(ctx context.Context, from uint64) (uint64, error)
			if len(args) == 0 {
				resync = func(ctx context.Context, from uint64) (uint64, error) {
					return a.printMatching(ctx, q, customer, st, consistency(max(from, minPos), wait))
				}
			}
			open := func(ctx context.Context, from uint64, resume bool) (watchStream, error) {
				if len(args) == 1 {
					return recvWatch(q.WatchOrder(ctx, &ordersv1.WatchOrderRequest{OrderId: args[0], FromPosition: from, Consistency: read}))
				}
				req := &ordersv1.WatchOrdersRequest{CustomerId: customer, Status: st, Consistency: read}
				if resume {
					req.FromPosition = &from
				}
				return recvWatch(q.WatchOrders(ctx, req))
			}
			return a.follow(cmd.Context(), from, cmd.Flags().Changed("from"), open, resync)
		},
	}
	c.Flags().StringVar(&customer, "customer", "", "follow this customer's orders")
	c.Flags().StringVar(&statusFlag, "status", "", "follow orders entering or leaving this status (draft, placed, paid, ...)")
	c.Flags().Uint64Var(&from, "from", 0, "resume after this log position")
	c.Flags().Uint64Var(&minPos, "min-position", 0, "start once the read model has applied this log position (read your own write: the first line shows it)")
	c.Flags().DurationVar(&wait, "max-wait", 0, "how long the server waits for --min-position per try (server default 2s); a read model still behind is retried within --timeout")
	return c
}

// watchStream is an open watch.
type watchStream struct {
	// accepted says the server took the watch on (it sent its headers),
	// which a watch resumed from a position shows before any change.
	accepted bool
	next     func() (watchMessage, error)
}

// recvWatch makes a watchStream of a watch call's answer.
func recvWatch[M any, P interface {
	*M
	watchMessage
}](s grpc.ServerStreamingClient[M], err error) (watchStream, error) {
	if err != nil {
		return watchStream{}, err
	}
	// nil when the call failed before its headers: Recv says how.
	md, _ := s.Header()
	return watchStream{accepted: md != nil, next: func() (watchMessage, error) {
		m, err := s.Recv()
		if err != nil {
			return nil, err
		}
		return P(m), nil
	}}, nil
}

// follow prints a watch until the user interrupts it, resuming after the
// last printed position when the server cuts the watcher off for falling
// behind, and when the server goes away (UNAVAILABLE). Reconnections wait
// retryBackoff, and end with the last refusal (UNAVAILABLE, or
// RESOURCE_EXHAUSTED from a server whose streams are all taken) once
// --timeout has passed since the server last took the watch on.
//
// resume says that from is a position to resume after (--from given, or a
// message printed), 0 included: the first message of a watch of every
// order on an empty log is at position 0, and a reconnection that asked
// for no position would start now and miss what changed meanwhile.
//
// resync, when set, answers a resume the server can no longer serve
// (OUT_OF_RANGE) as the server's message says to: it prints the watched
// orders as they are now, read at the last position printed (from) or
// after, and returns the position to follow from.
func (a *app) follow(ctx context.Context, from uint64, resume bool, open func(ctx context.Context, from uint64, resume bool) (watchStream, error),
	resync func(ctx context.Context, from uint64) (uint64, error)) error {
	sctx := a.streamCtx(ctx)
	// giveUp is when to stop trying to get the watch (back): --timeout
	// after the watch started, or after its first refusal or loss since
	// the server last took it on; zero while the server has it.
	var giveUp time.Time
	tries := 0
	// The orders printed at position from: a customer's erasure changes
	// each of the customer's orders at one position, and a watch resumed
	// from it sends them all again (the last one may have ended part-way
	// through them), which were printed once already.
	var printed map[string]bool
	resumed := false
	// relist is resync until used, and again once the watch it led to
	// was taken on: a second refusal (a replica behind another's) is
	// final.
	relist := resync
	for {
		if giveUp.IsZero() {
			giveUp = time.Now().Add(a.timeout)
		}
		w, done, err := a.openBy(sctx, giveUp, func(octx context.Context) (watchStream, error) { return open(octx, from, resume) })
		if err == nil && w.accepted {
			giveUp, tries, relist = time.Time{}, 0, resync
		}
		for err == nil {
			var m watchMessage
			if m, err = w.next(); err != nil {
				break
			}
			if m.GetPosition() != from {
				printed = nil
			}
			o := m.GetOrder()
			if o != nil && printed[o.GetOrderId()] {
				continue
			}
			if err = a.printChange(m); err != nil {
				return writeError{err}
			}
			from, resume = m.GetPosition(), true
			if o != nil {
				if printed == nil {
					printed = map[string]bool{}
				}
				printed[o.GetOrderId()] = true
			}
		}
		done()
		switch {
		case interrupted(ctx, err):
			return nil
		case status.Code(err) == codes.Unavailable, status.Code(err) == codes.ResourceExhausted && resume:
			// The server went away (shut down, restarting) or cannot
			// be reached, or cut the watch off for falling behind, or
			// has all its streams taken and refuses it again: reconnect,
			// resume after from, and wait longer each time. Either way
			// the server has not taken the watch back: give up after
			// --timeout of that.
			if terr := a.untrusted(); terr != nil && status.Code(err) == codes.Unavailable {
				return terr
			}
			if giveUp.IsZero() {
				giveUp = time.Now().Add(a.timeout)
			}
			left := time.Until(giveUp)
			if left <= 0 {
				return err
			}
			tries++
			d := min(retryBackoff.Delay(tries), left)
			a.retrying(err, d)
			if backoff.Sleep(ctx, d) != nil {
				return nil // interrupted while waiting
			}
		case status.Code(err) == codes.OutOfRange && (w.accepted || resumed):
			// The watch is too far behind to go on: resumed after
			// changes the server no longer keeps (it restarted, or the
			// other orders' changes went past them), or ended because
			// the read model moved past changes it had not seen.
			if relist == nil {
				// Not a mistake on the command line, which
				// OUT_OF_RANGE's exit code (usage) would say.
				return status.Error(codes.FailedPrecondition, status.Convert(err).Message())
			}
			// The server says to list again.
			fmt.Fprintln(a.io.Err, "ordersctl: the watch cannot go on from where it was (the server no longer keeps those changes); the matching orders as they are now follow, then their changes")
			if from, err = relist(sctx, from); err != nil {
				return unlessInterrupted(ctx, err)
			}
			// The server answered: --timeout counts afresh.
			giveUp, tries, resume, printed, relist = time.Time{}, 0, true, nil, nil
		default:
			return err
		}
		resumed = true
	}
}

// openBy opens a watch with open, ending the attempt at giveUp unless the
// server took the watch on (sent its headers) by then: gRPC alone waits
// for a server that takes the connection and never answers (a hung
// process, a dead node behind a proxy) for its connect timeout, 20 s, at
// every attempt. An attempt ended so is UNAVAILABLE. done releases the
// watch's context once it has ended.
func (a *app) openBy(ctx context.Context, giveUp time.Time, open func(context.Context) (watchStream, error)) (watchStream, func(), error) {
	octx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(time.Until(giveUp), cancel)
	w, err := open(octx)
	if !timer.Stop() && ctx.Err() == nil {
		// The attempt ran past giveUp: whatever it got, the stream is
		// cancelled.
		return watchStream{}, cancel, status.Errorf(codes.Unavailable, "the server did not take the watch on within --timeout (%v)", a.timeout)
	}
	return w, cancel, err
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

// printMatching prints every order a watch of customer and st follows as
// it is now, as a watch's "current" line (a WatchOrders answer without an
// event), and returns the position to follow from: the first page's (the
// later ones are read at it or after), so that a change made while the
// later pages were read is followed, if printed twice. Every line carries
// that position: a later page's own would tell a user who resumes --from
// it that the changes before it were printed, which for the first page's
// orders they were not. read is the first page's consistency: a relist
// read from a replica behind what the watch printed would print states
// older than changes printed before them, and then those changes again.
func (a *app) printMatching(ctx context.Context, q ordersv1.OrderQueryServiceClient, customer string, st ordersv1.OrderStatus, read *ordersv1.Consistency) (uint64, error) {
	var from uint64
	first := true
	req := &ordersv1.ListOrdersRequest{CustomerId: customer, Status: st, PageSize: listPage, Consistency: read}
	_, _, err := a.listPages(ctx, q, req, true, func(res *ordersv1.ListOrdersResponse) error {
		if first {
			from, first = res.GetPosition(), false
		}
		for _, o := range res.GetOrders() {
			if err := a.printChange(&ordersv1.WatchOrdersResponse{Order: o, Position: from, Revision: o.GetRevision()}); err != nil {
				return writeError{err}
			}
		}
		return nil
	})
	return from, err
}

// listPages reads the pages of req, every one with all or else the first,
// each call retried, hands each to page, and returns the list's position
// and its last page. The pages after the first are read at its position or
// later (their min_position): the list's position is the first page's, the
// lowest, so that a watch from it sends every change the list may not show.
func (a *app) listPages(ctx context.Context, q ordersv1.OrderQueryServiceClient, req *ordersv1.ListOrdersRequest, all bool,
	page func(*ordersv1.ListOrdersResponse) error) (position uint64, last *ordersv1.ListOrdersResponse, err error) {
	for {
		res, err := retried(a, ctx, func(ctx context.Context) (*ordersv1.ListOrdersResponse, error) {
			return q.ListOrders(ctx, req)
		})
		if err != nil {
			return 0, nil, err
		}
		if last == nil {
			position = res.GetPosition()
			if position > req.GetConsistency().GetMinPosition() {
				// Each page may reach another replica: one behind
				// this page's would show its orders as of before
				// the list's position, and a watch from it would
				// miss their changes between.
				c := &ordersv1.Consistency{MaxWait: req.GetConsistency().GetMaxWait()}
				c.MinPosition, req.Consistency = position, c
			}
		}
		last = res
		if err := page(res); err != nil {
			return 0, nil, err
		}
		if !all || res.GetNextPageToken() == "" {
			return position, last, nil
		}
		req.PageToken = res.GetNextPageToken()
	}
}

// listPage is the page size printMatching lists with: the query
// service's largest.
const listPage = 500

// interrupted reports whether err is the user's interrupt (ctx, the
// command's, ended), which ends a watch with success.
func interrupted(ctx context.Context, err error) bool {
	return status.Code(err) == codes.Canceled && ctx.Err() != nil
}

// unlessInterrupted is err, or nil when the user interrupted (ctx, the
// command's, ended): a call retried is answered with its last error then,
// not CANCELLED.
func unlessInterrupted(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}
