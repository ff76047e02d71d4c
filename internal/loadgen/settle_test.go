package loadgen

import (
	"context"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/app"
	"github.com/orderstream/orderstream/internal/app/apptest"
	"google.golang.org/grpc"
)

// inProcessOrdersd runs ordersd in-process with vars and returns its
// addresses and a gRPC target on it, closed when the test ends.
func inProcessOrdersd(t *testing.T, vars map[string]string) (app.Addrs, *GRPC) {
	t.Helper()
	a, _ := apptest.Start(t, vars)
	g, err := NewGRPC(a.GRPC, Auth{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	return a, g
}

// scriptedAdmin answers GetProjectionStatus with the next of its
// (position, head) pairs, the last one once they run out.
type scriptedAdmin struct {
	ordersv1.OrderAdminServiceClient
	status [][2]uint64
	polls  int
}

func (s *scriptedAdmin) GetProjectionStatus(context.Context, *ordersv1.GetProjectionStatusRequest, ...grpc.CallOption) (*ordersv1.GetProjectionStatusResponse, error) {
	st := s.status[min(s.polls, len(s.status)-1)]
	s.polls++
	return &ordersv1.GetProjectionStatusResponse{Position: st[0], Head: st[1]}, nil
}

// settle returns only once the log has stopped growing between two polls
// and the projection has applied all of it: here the log grows from 50 to
// 60 events, then stays, and the projection reaches 60 at the fourth
// poll.
func TestSettleWaitsForTheProjection(t *testing.T) {
	admin := &scriptedAdmin{status: [][2]uint64{{10, 50}, {30, 60}, {40, 60}, {60, 60}, {60, 70}}}
	head, err := settle(t.Context(), admin)
	if err != nil {
		t.Fatal(err)
	}
	if head != 60 || admin.polls != 4 {
		t.Fatalf("settled at %d after %d polls, want 60 after 4", head, admin.polls)
	}
}
