package rpcerr_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/internal/rpcerr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A call whose own deadline or cancellation ended it inside the store,
// which takes a call that ended unanswered for an outage, is answered
// DEADLINE_EXCEEDED or CANCELLED, and not logged as the store's outage:
// clients' timeouts read as "event store unavailable" warnings. With the
// call still running, the same error is an outage. So is any error a call
// cut short meets: an interrupted read is not a fault of the server.
func TestCallersDeadlineIsNoOutage(t *testing.T) {
	expired, cancel := context.WithTimeout(t.Context(), 0)
	defer cancel()
	<-expired.Done()
	cancelled, stop := context.WithCancel(t.Context())
	stop()
	for _, c := range []struct {
		name string
		ctx  context.Context
		err  error
		want codes.Code
		logs bool
	}{
		{"deadline", expired, fmt.Errorf("eventstore: load: %w: %w", eventstore.ErrUnavailable, context.DeadlineExceeded), codes.DeadlineExceeded, false},
		{"cancelled", cancelled, fmt.Errorf("eventstore: load: %w: %w", eventstore.ErrUnavailable, context.Canceled), codes.Canceled, false},
		{"the store's own timeout", t.Context(), fmt.Errorf("eventstore: load: %w: %w", eventstore.ErrUnavailable, context.DeadlineExceeded), codes.Unavailable, true},
		// A read model's query interrupted as the caller left: SQLite's
		// own error, which wraps no context error.
		{"interrupted", cancelled, fmt.Errorf("projections: list: %w", errors.New("interrupted (9)")), codes.Canceled, false},
		{"interrupted by the deadline", expired, fmt.Errorf("projections: list: %w", errors.New("interrupted (9)")), codes.DeadlineExceeded, false},
		{"a fault", t.Context(), fmt.Errorf("projections: list: %w", errors.New("database disk image is malformed (11)")), codes.Internal, true},
	} {
		var logs bytes.Buffer
		err := rpcerr.ToStatus(c.ctx, slog.New(slog.NewTextHandler(&logs, nil)), c.err)
		if got := status.Code(err); got != c.want || (logs.Len() > 0) != c.logs {
			t.Errorf("%s: %v, logged %q; want %v, logged: %v", c.name, err, logs.String(), c.want, c.logs)
		}
	}
}
