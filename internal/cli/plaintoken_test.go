package cli_test

import (
	"context"
	"strings"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/cli"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// tokenSeen is a query service that answers GetOrder with the
// authorization it was sent.
type tokenSeen struct {
	ordersv1.UnimplementedOrderQueryServiceServer
}

func (tokenSeen) GetOrder(ctx context.Context, _ *ordersv1.GetOrderRequest) (*ordersv1.GetOrderResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	return &ordersv1.GetOrderResponse{Order: &ordersv1.Order{OrderId: strings.Join(md.Get("authorization"), ","), Currency: "EUR"}}, nil
}

// A token is not sent in clear beyond loopback: without TLS, an address
// that may be another machine's is refused before anything is sent,
// unless --plaintext-token says to send it all the same. Loopback, by any
// of its names, takes it as before. It went to any address over plaintext,
// for anyone on the way to read.
func TestTokenInClearBeyondLoopbackIsRefused(t *testing.T) {
	for _, addr := range []string{"192.0.2.1:50051", "orders.example:50051", "dns:///orders.example:50051"} {
		for _, c := range []call{{addr: addr, env: map[string]string{"ORDERS_TOKEN": "viewer-token-012345678"}}, {addr: addr}} {
			args := []string{"orders", "get", "o-1"}
			if c.env == nil {
				args = append(args, "--token", "viewer-token-012345678")
			}
			if r := c.run(t, args...); r.code != cli.ExitUsage || !strings.Contains(r.stderr, "--plaintext-token") {
				t.Errorf("%s, a token, no TLS: exit %d, %q; want %d saying how to send it anyway", addr, r.code, r.stderr, cli.ExitUsage)
			}
		}
	}
	port := serve(t, func(gs *grpc.Server) { ordersv1.RegisterOrderQueryServiceServer(gs, tokenSeen{}) })
	_, p, _ := strings.Cut(port, ":")
	for _, addr := range []string{port, "localhost:" + p, "dns:///127.0.0.1:" + p} {
		r := run(t, addr, "orders", "get", "o-1", "--token", "viewer-token-012345678", "-o", "json")
		if r.code != cli.ExitOK || !strings.Contains(r.stdout, "Bearer viewer-token-012345678") {
			t.Errorf("%s, loopback: exit %d, %s%s; want the token sent", addr, r.code, r.stdout, r.stderr)
		}
	}
}
