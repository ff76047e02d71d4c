package client_test

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
)

// served is a replica: a gRPC server on loopback with the health service,
// whose calls of any other method it counts.
type served struct {
	addr  string
	hs    *health.Server
	calls atomic.Int32
}

func replica(t *testing.T) *served {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &served{addr: lis.Addr().String(), hs: health.NewServer()}
	gs := grpc.NewServer(grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		s.calls.Add(1)
		return status.Error(codes.NotFound, "answered")
	}))
	healthpb.RegisterHealthServer(gs, s.hs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return s
}

// A connection made WithHealthOf a service sends its calls only to the
// replicas that report that service SERVING: a replica that is up but
// not ready (a query node catching up) gets none, and gets its share
// again once it serves. Before, calls went round every replica.
func TestCallsGoOnlyToReplicasServingTheService(t *testing.T) {
	const service = "orders.v1.OrderQueryService"
	ready, catching := replica(t), replica(t)
	ready.hs.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)
	catching.hs.SetServingStatus(service, healthpb.HealthCheckResponse_NOT_SERVING)
	r := manual.NewBuilderWithScheme("replicas")
	r.InitialState(resolver.State{Addresses: []resolver.Address{{Addr: ready.addr}, {Addr: catching.addr}}})
	resolver.Register(r)
	conn, err := client.Dial("replicas:///query", client.WithHealthOf(service))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	call := func() {
		t.Helper()
		err := conn.Invoke(t.Context(), "/"+service+"/GetOrder", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{}, grpc.WaitForReady(true))
		if status.Code(err) != codes.NotFound {
			t.Fatalf("call: %v", err)
		}
	}
	for range 20 {
		call()
	}
	if n := catching.calls.Load(); n != 0 || ready.calls.Load() != 20 {
		t.Fatalf("calls: %d to the serving replica, %d to the one not serving; want all to the serving one", ready.calls.Load(), n)
	}
	catching.hs.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)
	for deadline := time.Now().Add(30 * time.Second); catching.calls.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the replica serving again got no call")
		}
		call() // until the health watch has told the connection
	}
}
