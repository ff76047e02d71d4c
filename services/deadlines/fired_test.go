package deadlines_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/schedule"
	"github.com/orderstream/orderstream/services/deadlines"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// serveCommands serves srv as the command service on a real listener and
// returns a client of it; both stop when the test ends.
func serveCommands(t *testing.T, srv ordersv1.OrderCommandServiceServer) ordersv1.OrderCommandServiceClient {
	t.Helper()
	gs := grpc.NewServer()
	ordersv1.RegisterOrderCommandServiceServer(gs, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		gs.Stop()
	})
	return ordersv1.NewOrderCommandServiceClient(conn)
}

// closedCancel is the command service, except that CancelOrder answers
// UNAVAILABLE until opened (a command side that is down).
type closedCancel struct {
	commandRef
	open    atomic.Bool
	once    sync.Once
	refused chan struct{} // closed at the first refusal
}

func (s *closedCancel) CancelOrder(ctx context.Context, r *ordersv1.CancelOrderRequest) (*ordersv1.CancelOrderResponse, error) {
	if !s.open.Load() {
		s.once.Do(func() { close(s.refused) })
		return nil, status.Error(codes.Unavailable, "command side down")
	}
	return s.commandRef.CancelOrder(ctx, r)
}

// A payment timeout that fired while the command side was down is listed
// as fired, not lost from the list, until it is enforced; then it leaves
// the list. Before, a fired timer left the list when it fired, and nothing
// showed the cancellation still owed.
func TestFiredDeadlineIsListedUntilEnforced(t *testing.T) {
	e := start(t)
	srv := &closedCancel{commandRef: commandRef{e: e}, refused: make(chan struct{})}
	e.cmd = serveCommands(t, srv)
	m, _ := e.run(t, time.Second, time.Hour)
	id := e.place(t, "fired-waits")
	select {
	case <-srv.refused:
	case <-time.After(30 * time.Second):
		t.Fatalf("the payment timeout of %s never reached CancelOrder", id)
	}
	res, err := deadlines.NewAdmin(m, nil).ListDeadlines(t.Context(), &ordersv1.ListDeadlinesRequest{OrderId: id})
	if err != nil {
		t.Fatal(err)
	}
	if ds := res.GetDeadlines(); len(ds) != 1 || !ds[0].GetFired() || ds[0].GetOverdue() ||
		ds[0].GetKind() != ordersv1.DeadlineKind_DEADLINE_KIND_PAYMENT_TIMEOUT {
		t.Fatalf("deadlines of %s while its cancel is refused: %v, want its payment timeout, fired", id, ds)
	}
	srv.open.Store(true)
	cancelledOnce(t, e.waitEvent(t, id, "OrderCancelled"))
	listed(t, m, id)
}

// keptFirings is the DEADLINES stream as a manager of an older build used
// it: a handled firing is acknowledged, never deleted.
type keptFirings struct{ *schedule.Stream }

func (keptFirings) Delete(context.Context, uint64) error { return nil }

// A firing that a manager of an older build handled (acknowledged, not
// deleted) is not listed as owed: during a rolling upgrade the list would
// otherwise show every firing that manager handled.
func TestFiringHandledWithoutDeleteIsNotListed(t *testing.T) {
	e := start(t)
	timers := e.timers(t)
	m, _ := e.runTimers(t, keptFirings{timers}, time.Second, time.Hour)
	id := e.place(t, "older-build")
	cancelledOnce(t, e.waitEvent(t, id, "OrderCancelled"))
	listed(t, m, id)
}

// firingMidRead is the DEADLINES stream read as its timers fire: each
// pending timer a read passes is met again further on as fired, the
// firing having been appended behind the read.
type firingMidRead struct{ *schedule.Stream }

func (s firingMidRead) Each(ctx context.Context, fn func(subject string, data []byte), filters ...string) error {
	var firings [][2]string
	err := s.Stream.Each(ctx, func(subject string, data []byte) {
		fn(subject, data)
		if rest, ok := strings.CutPrefix(subject, deadlines.SubjectRoot+".schedule."); ok {
			firings = append(firings, [2]string{deadlines.SubjectRoot + ".fired." + rest, string(data)})
		}
	}, filters...)
	for _, f := range firings {
		fn(f[0], []byte(f[1]))
	}
	return err
}

// A timer that fires while the list reads the stream is listed once, as
// fired, not as pending and fired both; nor does it make a full page
// report more.
func TestTimerFiringDuringTheListIsListedOnce(t *testing.T) {
	e := start(t)
	m, _ := e.runTimers(t, firingMidRead{e.timers(t)}, time.Hour, time.Hour)
	id := e.place(t, "fires-mid-read")
	listed(t, m, id, "payment_timeout")
	ds, truncated, err := m.List(t.Context(), id, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || !ds[0].Fired || truncated {
		t.Fatalf("deadlines of %s as its timer fires: %+v (truncated %v), want its payment timeout once, fired", id, ds, truncated)
	}
}
