package cli_test

import (
	"crypto/tls"
	"net"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/cli"
	"github.com/orderstream/orderstream/internal/tlsconfig/tlstest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// A server whose certificate --ca does not trust is a mistake no retry
// mends: a call or a watch exits 5 with it at once, not 4 ("unavailable")
// after retrying it for --timeout.
func TestUntrustedServerCertificateIsNotRetried(t *testing.T) {
	_, cert, key, _, _ := tlstest.Generate(t, t.TempDir())
	otherCA, _, _, _, _ := tlstest.Generate(t, t.TempDir())
	addr := serveTLS(t, cert, key, func(*grpc.Server) {})
	for _, args := range [][]string{{"orders", "get", "o-1"}, {"orders", "watch", "o-1"}} {
		r := run(t, addr, append([]string{"--ca", otherCA, "--timeout", "3s"}, args...)...)
		if r.code != cli.ExitOther {
			t.Errorf("%v against an untrusted certificate: exit %d, want %d: %s", args, r.code, cli.ExitOther, r.stderr)
		}
	}
}

// A server reached by an address its certificate does not name (an IP, a
// tunnel) is verified against the name --server-name gives, which the
// untrusted-certificate error points at; without it the same server is
// refused. ordersctl had no such flag, so such a server could not be
// reached over TLS at all.
func TestServerNameVerifiesACertificateForAnotherName(t *testing.T) {
	dir := t.TempDir()
	cert, key := tlstest.SelfSigned(t, dir, "orders.internal")
	addr := serveTLS(t, cert, key, func(gs *grpc.Server) {
		hs := health.NewServer()
		for _, svc := range []string{"", ordersv1.OrderCommandService_ServiceDesc.ServiceName} {
			hs.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
		}
		healthpb.RegisterHealthServer(gs, hs)
	})
	if r := run(t, addr, "--ca", cert, "--timeout", "3s", "admin", "health"); r.code != cli.ExitOther {
		t.Fatalf("without --server-name: exit %d, want %d (untrusted): %s", r.code, cli.ExitOther, r.stderr)
	}
	ok(t, run(t, addr, "--ca", cert, "--server-name", "orders.internal", "--timeout", "3s", "admin", "health"))
}

// serveTLS serves what register registers over TLS with the certificate
// cert (key its key) on a loopback port until the test ends, and returns
// its address.
func serveTLS(t *testing.T, cert, key string, register func(*grpc.Server)) string {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}})))
	register(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}
