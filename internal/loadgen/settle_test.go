package loadgen

import (
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/app"
	"github.com/orderstream/orderstream/internal/app/apptest"
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

// settle returns once the projection has applied everything a phase
// appended: here a burst of creates, which nothing appends after.
func TestSettleWaitsForTheProjection(t *testing.T) {
	_, g := inProcessOrdersd(t, nil)
	if _, err := RunClosed(t.Context(), "burst", g, 8, 300*time.Millisecond, Mix{Create: 1}, 0); err != nil {
		t.Fatal(err)
	}
	admin := ordersv1.NewOrderAdminServiceClient(g.conn)
	if _, err := settle(t.Context(), admin); err != nil {
		t.Fatal(err)
	}
	st, err := admin.GetProjectionStatus(t.Context(), &ordersv1.GetProjectionStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetHead() == 0 || st.GetPosition() < st.GetHead() {
		t.Fatalf("after settle: projection at %d of %d", st.GetPosition(), st.GetHead())
	}
}
