package client

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/tcpproxy"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// watchedHealth is a health server that reports when a watch's call ends
// on the server's side.
type watchedHealth struct {
	*health.Server
	ended chan struct{}
}

func (h watchedHealth) Watch(req *healthpb.HealthCheckRequest, s grpc.ServerStreamingServer[healthpb.HealthCheckResponse]) error {
	defer close(h.ended)
	return h.Server.Watch(req, s)
}

// silentLink serves a health server with opts behind a proxy, opens a
// watch through the proxy on conn, takes its first answer, and then cuts
// the link without a reset, as a lost host or a partition does. It
// returns the watch and the channel closed when the server's side of the
// watch ends.
func silentLink(t *testing.T, ctx context.Context, dial func(addr string) (*grpc.ClientConn, error), opts ...grpc.ServerOption) (grpc.ServerStreamingClient[healthpb.HealthCheckResponse], <-chan struct{}) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(opts...)
	h := watchedHealth{Server: health.NewServer(), ended: make(chan struct{})}
	healthpb.RegisterHealthServer(gs, h)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	p, err := tcpproxy.Start(tcpproxy.To(lis.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	conn, err := dial(p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	w, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}
	p.SetMode(tcpproxy.Drop)
	return w, h.ended
}

// A watch on a Dial'd connection whose server went silent ends
// UNAVAILABLE once a ping goes unanswered, and a caller can watch again
// elsewhere. Before, nothing was sent on an idle watch, and it waited for
// ever: the gateway kept a browser's watch open, heartbeats and all, on
// a query node that was gone.
func TestWatchOfASilentServerEnds(t *testing.T) {
	t.Parallel()
	// The bound only ends the test should the watch never end; pings
	// find the link dead in keepaliveTime plus keepaliveTimeout.
	ctx, cancel := context.WithTimeout(t.Context(), 6*(keepaliveTime+keepaliveTimeout))
	defer cancel()
	w, _ := silentLink(t, ctx, func(addr string) (*grpc.ClientConn, error) { return Dial(addr, Pinned()) }, ServerKeepalive()...)
	_, err := w.Recv()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("watch on a link gone silent: %v, want UNAVAILABLE", err)
	}
}

// A server with ServerKeepalive's options ends the calls of a client that
// went silent once its ping goes unanswered, so that a lost gateway's
// watches do not hold their share of the server's streams. (With 1 s
// pings here; ServerKeepalive's are serverKeepaliveTime apart.)
func TestServerEndsTheWatchOfASilentClient(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// A client without pings of its own: the server's find it dead.
	plain := func(addr string) (*grpc.ClientConn, error) {
		return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	_, ended := silentLink(t, ctx, plain, serverKeepalive(time.Second, time.Second)...)
	bound := time.NewTimer(time.Minute) // only should the watch never end
	defer bound.Stop()
	select {
	case <-ended:
	case <-bound.C:
		t.Fatal("the server still holds the watch of a client gone silent")
	}
}
