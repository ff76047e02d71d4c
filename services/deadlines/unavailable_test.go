package deadlines_test

import (
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/services/deadlines"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// With NATS gone, ListDeadlines answers UNAVAILABLE (retry later), as
// ListParkedPayments does (its bucket wraps eventstore.ErrUnavailable, see
// TestBucketWithoutItsServerIsUnavailable). It answered DEADLINE_EXCEEDED
// for the NATS client's own 5 s timeout when the caller set none (and
// INTERNAL for a JetStream answering 503): the timers' stream did not
// classify its errors.
func TestListDeadlinesWithoutNATSIsUnavailable(t *testing.T) {
	e := start(t)
	m, _ := e.run(t, time.Hour, time.Hour)
	id := e.place(t, "no-nats")
	listed(t, m, id, "payment_timeout")
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	_, err := deadlines.NewAdmin(m, nil).ListDeadlines(t.Context(), &ordersv1.ListDeadlinesRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("ListDeadlines with NATS down: %v, want UNAVAILABLE", err)
	}
}

// The DEADLINES stream is lost (an operator deleted it, or the server lost
// it): the next ListDeadlines answers UNAVAILABLE, a condition a retry
// clears, since the call after it sets the stream up again. It answered
// INTERNAL, logged as the server's fault.
func TestListAfterTheStreamIsLostIsUnavailable(t *testing.T) {
	e := start(t)
	m, stop := e.run(t, time.Hour, time.Hour)
	id := e.place(t, "list-after-loss")
	listed(t, m, id, "payment_timeout")
	stop()
	if err := e.js.DeleteStream(t.Context(), deadlines.StreamName); err != nil {
		t.Fatal(err)
	}
	a := deadlines.NewAdmin(m, nil)
	_, err := a.ListDeadlines(t.Context(), &ordersv1.ListDeadlinesRequest{})
	_, err2 := a.ListDeadlines(t.Context(), &ordersv1.ListDeadlinesRequest{})
	if status.Code(err) != codes.Unavailable || err2 != nil {
		t.Fatalf("ListDeadlines with the DEADLINES stream lost: %v (the next call: %v)", err, err2)
	}
}
