package client_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"github.com/orderstream/orderstream/internal/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
)

type countingHealth struct {
	*health.Server
	n *atomic.Int64
}

func (c countingHealth) Check(ctx context.Context, r *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	c.n.Add(1)
	return c.Server.Check(ctx, r)
}

// Two query nodes behind one name (compose's alias "query"), as DNS
// answers it: two addresses, and both take calls. Before, every call went
// to the first node reached (gRPC's pick_first).
func TestCallsGoRoundTheNamesAddresses(t *testing.T) {
	var counts [2]atomic.Int64
	var addrs []resolver.Address
	for i := range 2 {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := grpc.NewServer()
		healthpb.RegisterHealthServer(s, countingHealth{health.NewServer(), &counts[i]})
		go func() { _ = s.Serve(lis) }()
		t.Cleanup(s.Stop)
		addrs = append(addrs, resolver.Address{Addr: lis.Addr().String()})
	}
	r := manual.NewBuilderWithScheme("roundrobin-test")
	r.InitialState(resolver.State{Addresses: addrs})
	resolver.Register(r)
	conn, err := client.Dial("roundrobin-test:///query:50051")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	for range 100 {
		if _, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if a, b := counts[0].Load(), counts[1].Load(); a == 0 || b == 0 || a+b != 100 {
		t.Fatalf("calls per node: %d, %d; want both to take a share of 100", a, b)
	}
}
