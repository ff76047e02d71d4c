package loadgen

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// A phase may meet the refusals it expects (the mixed load's), and a
// sliver of others; beyond that, or with nothing completed, it is refused.
func TestPhasesThatFailAreRefused(t *testing.T) {
	for _, c := range []struct {
		name     string
		rep      Report
		expected []string
		refused  bool
	}{
		{"clean", Report{Completed: 1000}, nil, false},
		{"a sliver", Report{Completed: 1000, Overall: OpStats{Errors: map[string]int64{"Unavailable": 10}}}, nil, false},
		{"more", Report{Completed: 1000, Overall: OpStats{Errors: map[string]int64{"Unavailable": 11}}}, nil, true},
		{"expected", Report{Completed: 1000, Overall: OpStats{Errors: map[string]int64{"NotFound": 300, "FailedPrecondition": 200}}}, mixedAnswers, false},
		{"expected and others", Report{Completed: 1000, Overall: OpStats{Errors: map[string]int64{"NotFound": 300, "Internal": 20}}}, mixedAnswers, true},
		{"nothing completed", Report{}, nil, true},
	} {
		if err := failures(&c.rep, c.expected...); (err != nil) != c.refused {
			t.Errorf("%s: %v, want refused %v", c.name, err, c.refused)
		}
	}
}

// unavailableCommands answers every command UNAVAILABLE, as an ordersd
// whose event store is away does.
type unavailableCommands struct {
	ordersv1.OrderCommandServiceClient
}

func (unavailableCommands) CreateOrder(context.Context, *ordersv1.CreateOrderRequest, ...grpc.CallOption) (*ordersv1.CreateOrderResponse, error) {
	return nil, status.Error(codes.Unavailable, "event store unavailable")
}

// listing answers every list, empty.
type listing struct {
	ordersv1.UnimplementedOrderQueryServiceServer
}

func (listing) ListOrders(context.Context, *ordersv1.ListOrdersRequest) (*ordersv1.ListOrdersResponse, error) {
	return &ordersv1.ListOrdersResponse{}, nil
}

// An ordersd that fails its commands produces no latency figures: the
// mixed load and the append → visible phase were measured over its
// failures (the lag row read 0.0 ms when every append failed, as only the
// appends that worked were timed), and the table came out all the same,
// as long as something answered (here the lists).
func TestOpenLoopPhasesOfAFailingOrdersdFail(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ordersv1.RegisterOrderQueryServiceServer(srv, listing{})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	g := &GRPC{conn: conn, cmd: unavailableCommands{}, q: ordersv1.NewOrderQueryServiceClient(conn), p: newPool()}
	cfg := FloorConfig{Clients: 2, Phase: 200 * time.Millisecond, LagRate: 200, Progress: io.Discard}
	rep := &FloorReport{LagRate: cfg.LagRate}
	err = floorOpenLoop(t.Context(), cfg, &ordersd{}, g, &scriptedAdmin{status: [][2]uint64{{0, 0}}}, rep)
	if err == nil {
		t.Fatalf("the open-loop phases of an ordersd failing every command: no error; lag %+v", rep.Lag)
	}
}
