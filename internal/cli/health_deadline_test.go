package cli_test

import (
	"context"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// stuckHealth answers no check: each waits until its caller gives up.
type stuckHealth struct {
	healthpb.UnimplementedHealthServer
	calls atomic.Int32
}

func (h *stuckHealth) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	h.calls.Add(1)
	<-ctx.Done()
	return nil, ctx.Err()
}

// admin health checks every service within one --timeout: against a
// server that answers none, the first check takes the whole deadline and
// the others are not sent, and it exits 4. Before, each check had a
// --timeout of its own, and the command took seven of them.
func TestHealthChecksShareOneDeadline(t *testing.T) {
	h := &stuckHealth{}
	addr := serve(t, func(gs *grpc.Server) { healthpb.RegisterHealthServer(gs, h) })
	r := run(t, addr, "admin", "health", "--timeout", "300ms")
	if r.code != 4 {
		t.Fatalf("exit %d, want 4: %s%s", r.code, r.stdout, r.stderr)
	}
	if n := h.calls.Load(); n != 1 {
		t.Fatalf("%d checks reached the server, want the first alone (the deadline passed during it)", n)
	}
}
