package cli_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/cli"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A watch of a customer's orders that the server can no longer resume
// (it restarted, keeping changes from 20 on), or that it ends once taken
// on with OUT_OF_RANGE (a rebuilt read model moved past changes the watch
// had not seen), lists the customer's orders as they are now and follows
// from the list's position, saying so on stderr, as the server's message
// says to. The first exited 3 after any restart that followed another
// customer's change, though --help promises that it resumes; the second
// exited 3 on a watch's first connection. Every listed line carries the
// first page's position, which the watch follows from: a later page's
// (25) printed before the change at 21 told a user resuming --from it
// that 21 was printed. The list is read at the last position printed or
// after. --timeout counts afresh once the list is read: a
// list slower than what was left of it after the watch was lost would
// otherwise end the watch with exit 4, though the server answered.
func TestFilteredWatchTheServerCannotResumeListsAndGoesOn(t *testing.T) {
	for _, end := range []error{status.Error(codes.Unavailable, "server shutting down"),
		status.Error(codes.OutOfRange, "the read model caught up past changes this watch did not see; list the orders again")} {
		srv := &relistQuery{end: end, pageWait: 600 * time.Millisecond}
		addr := serve(t, func(gs *grpc.Server) { ordersv1.RegisterOrderQueryServiceServer(gs, srv) })
		w := startWatch(t, call{addr: addr}, "orders", "watch", "--customer", "c", "--timeout", "1s")
		got := watchLines(t, w, 4)
		w.stop()
		r := <-w.done
		want := []string{"9 ord-a ItemAdded", "20 ord-a current", "20 ord-b current", "21 ord-c OrderCreated"}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("first watch ended %v: printed %q, want %q", status.Code(end), got, want)
		}
		if r.code != cli.ExitOK || !strings.Contains(r.stderr, "cannot go on from where it was") {
			t.Errorf("first watch ended %v, then stopped: exit %d, stderr %q; want 0 and a word on what was not printed", status.Code(end), r.code, r.stderr)
		}
		// Read where the watch had printed to, or later: a replica
		// behind it would show states older than the change at 9.
		srv.mu.Lock()
		if srv.firstMin < 9 {
			t.Errorf("first watch ended %v: the list was asked at min_position %d, below the change printed at 9", status.Code(end), srv.firstMin)
		}
		srv.mu.Unlock()
	}
}

// A resync's position that the server refuses too (a replica behind
// another's) ends the watch with exit 3, rather than listing for ever,
// whether the watch was lost (UNAVAILABLE) or ended OUT_OF_RANGE on its
// first connection: then it exited 1 (usage), as if its command line
// were wrong.
func TestFilteredWatchRefusedAfterItsResyncEnds(t *testing.T) {
	for _, end := range []error{status.Error(codes.Unavailable, "server shutting down"), status.Error(codes.OutOfRange, "list the orders again")} {
		srv := &relistQuery{end: end, always: true}
		addr := serve(t, func(gs *grpc.Server) { ordersv1.RegisterOrderQueryServiceServer(gs, srv) })
		r := run(t, addr, "orders", "watch", "--customer", "c")
		if r.code != cli.ExitConflict {
			t.Errorf("first watch ended %v: exit %d, stderr %q; want %d", status.Code(end), r.code, r.stderr, cli.ExitConflict)
		}
		if n := strings.Count(r.stdout, "current"); n != 2 {
			t.Errorf("first watch ended %v: %d current lines, want the list printed once:\n%s", status.Code(end), n, r.stdout)
		}
	}
}

// relistQuery is a query service that restarts, or swaps in a rebuilt
// read model, under a watch of a customer's orders, as the real one
// does: its first watch sends a change at 9 and ends with end (after its
// headers); a watch resumed from before what it keeps (20), or any with
// always, is refused OUT_OF_RANGE, its message saying to list the orders
// again and watch from the list's position; a watch from 20 on sends a
// change at 21. Its list has two pages, as of 20 and 25, each answered
// after pageWait, or, with down, UNAVAILABLE (the first list call closing
// listed).
type relistQuery struct {
	ordersv1.UnimplementedOrderQueryServiceServer
	end      error
	always   bool
	pageWait time.Duration
	down     bool
	listed   chan struct{}
	once     sync.Once
	// behind, when set, is the position the second page is answered at
	// (a replica behind the first page's) unless it asks for a later one.
	behind uint64
	mu     sync.Mutex
	// firstMin and secondMin are the min_position the first and the
	// second page were last asked at.
	firstMin, secondMin uint64
	watches             int
}

func (q *relistQuery) WatchOrders(req *ordersv1.WatchOrdersRequest, s grpc.ServerStreamingServer[ordersv1.WatchOrdersResponse]) error {
	q.mu.Lock()
	q.watches++
	n := q.watches
	q.mu.Unlock()
	if n == 1 {
		for _, m := range []*ordersv1.WatchOrdersResponse{{Position: 8},
			{Order: flakyOrder("ord-a", ordersv1.OrderStatus_ORDER_STATUS_DRAFT), Position: 9, Revision: 2, EventType: "ItemAdded", Actor: "admin"}} {
			if err := s.Send(m); err != nil {
				return err
			}
		}
		return q.end
	}
	if q.always || req.GetFromPosition() < 20 {
		return status.Error(codes.OutOfRange, "from_position is older than the changes kept; list the orders again and watch from the list's position")
	}
	if err := s.Send(&ordersv1.WatchOrdersResponse{Order: flakyOrder("ord-c", ordersv1.OrderStatus_ORDER_STATUS_DRAFT), Position: 21, Revision: 1, EventType: "OrderCreated", Actor: "admin"}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

func (q *relistQuery) ListOrders(ctx context.Context, req *ordersv1.ListOrdersRequest) (*ordersv1.ListOrdersResponse, error) {
	if q.listed != nil {
		q.once.Do(func() { close(q.listed) })
	}
	if q.down {
		return nil, status.Error(codes.Unavailable, "node restarting")
	}
	if req.GetCustomerId() != "c" {
		return nil, status.Error(codes.InvalidArgument, "the watch's filter was not listed")
	}
	t := time.NewTimer(q.pageWait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if req.GetPageToken() == "" {
		q.mu.Lock()
		q.firstMin = req.GetConsistency().GetMinPosition()
		q.mu.Unlock()
		return &ordersv1.ListOrdersResponse{Orders: []*ordersv1.Order{flakyOrder("ord-a", ordersv1.OrderStatus_ORDER_STATUS_PLACED)}, Position: 20, NextPageToken: "p2"}, nil
	}
	at := uint64(25)
	if q.behind != 0 {
		at = max(q.behind, req.GetConsistency().GetMinPosition())
	}
	q.mu.Lock()
	q.secondMin = req.GetConsistency().GetMinPosition()
	q.mu.Unlock()
	return &ordersv1.ListOrdersResponse{Orders: []*ordersv1.Order{flakyOrder("ord-b", ordersv1.OrderStatus_ORDER_STATUS_DRAFT)}, Position: at}, nil
}

// The pages of a list after the first are read at its position or later:
// each call may reach another replica, and one behind showed its orders
// as of before the position they were printed at, which the watch then
// followed from, missing their changes between. The list's position was
// the first page's, however far behind a later one was.
func TestRelistedPagesAreReadFromTheFirstPagesPositionOn(t *testing.T) {
	srv := &relistQuery{end: status.Error(codes.Unavailable, "server shutting down"), behind: 15}
	addr := serve(t, func(gs *grpc.Server) { ordersv1.RegisterOrderQueryServiceServer(gs, srv) })
	w := startWatch(t, call{addr: addr}, "orders", "watch", "--customer", "c")
	got := watchLines(t, w, 4)
	w.stop()
	<-w.done
	want := []string{"9 ord-a ItemAdded", "20 ord-a current", "20 ord-b current", "21 ord-c OrderCreated"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("printed %q, want %q", got, want)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.secondMin < 20 {
		t.Errorf("the second page was asked at min_position %d, below the first page's 20: a replica behind answered it as of 15", srv.secondMin)
	}
}

// watchLines reads n lines of w as "position order event".
func watchLines(t *testing.T, w *watching, n int) []string {
	t.Helper()
	var got []string
	for len(got) < n {
		f := strings.Split(w.next(t), "\t")
		got = append(got, f[0]+" "+f[1]+" "+f[4])
	}
	return got
}

// Ctrl-C while the list is being read (the server restarting) ends the
// watch with success, as any interrupt does. (Between two tries of the
// list the retry answers its last UNAVAILABLE, which exited 4; this
// test's interrupt mostly lands on a try in flight.)
func TestWatchInterruptedWhileListingEndsWithSuccess(t *testing.T) {
	srv := &relistQuery{end: status.Error(codes.OutOfRange, "list the orders again"), down: true, listed: make(chan struct{})}
	addr := serve(t, func(gs *grpc.Server) { ordersv1.RegisterOrderQueryServiceServer(gs, srv) })
	w := startWatch(t, call{addr: addr}, "orders", "watch", "--customer", "c")
	w.next(t)
	select {
	case <-srv.listed:
	case r := <-w.done:
		t.Fatalf("the watch ended without listing: exit %d, stderr %q", r.code, r.stderr)
	}
	w.stop()
	if r := <-w.done; r.code != cli.ExitOK {
		t.Fatalf("interrupted while listing: exit %d, stderr %q; want 0", r.code, r.stderr)
	}
}
