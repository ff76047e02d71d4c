package cli_test

import (
	"strings"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/cli"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// admin health: "Show the gRPC health of each service; exits 4 unless
// every service the server runs serves". ordersd reports the DeadlineAdminService's health (roles.go), and
// the console shows it; ordersctl never asked, and a node whose deadline
// admin service did not serve was reported healthy, exit 0.
func TestHealthCoversDeadlineAdmin(t *testing.T) {
	addr := serve(t, func(gs *grpc.Server) {
		hs := health.NewServer()
		for _, s := range []string{"", ordersv1.OrderCommandService_ServiceDesc.ServiceName, ordersv1.OrderQueryService_ServiceDesc.ServiceName,
			ordersv1.OrderAuditService_ServiceDesc.ServiceName, ordersv1.OrderAdminService_ServiceDesc.ServiceName,
			ordersv1.PaymentAdminService_ServiceDesc.ServiceName} {
			hs.SetServingStatus(s, healthpb.HealthCheckResponse_SERVING)
		}
		hs.SetServingStatus(ordersv1.DeadlineAdminService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
		healthpb.RegisterHealthServer(gs, hs)
	})
	r := run(t, addr, "admin", "health", "--timeout", "2s")
	if r.code != cli.ExitUnavailable || !strings.Contains(r.stdout, "DeadlineAdminService") {
		t.Fatalf("health with the deadline admin service NOT_SERVING: exit %d, want %d and it listed:\n%s%s", r.code, cli.ExitUnavailable, r.stdout, r.stderr)
	}
}
