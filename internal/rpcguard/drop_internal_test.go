package rpcguard

import (
	"context"
	"log/slog"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// A request whose decode failed and whose call an interceptor between
// Unary and Decoded refused (authentication) leaves nothing behind: Unary
// drops the error that no Decoded took.
func TestDecodeErrorOfARefusedCallIsDropped(t *testing.T) {
	g, err := New(slog.New(slog.DiscardHandler), noopmetric.NewMeterProvider())
	if err != nil {
		t.Fatal(err)
	}
	req := &ordersv1.ForgetCustomerRequest{}
	body := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "\xff\xfe")
	if err := (codec{g}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(body)}, req); err != nil {
		t.Fatalf("the codec answered %v; it sets the error aside", err)
	}
	if g.held.Load() != 1 {
		t.Fatalf("%d decode errors held, want the request's", g.held.Load())
	}
	refuse := func(context.Context, any) (any, error) { return nil, status.Error(codes.Unauthenticated, "no token") }
	if _, err := g.Unary(t.Context(), req, &grpc.UnaryServerInfo{FullMethod: "/m"}, refuse); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Unary: %v, want the refusal", err)
	}
	if g.held.Load() != 0 {
		t.Fatalf("%d decode errors held after the call ended", g.held.Load())
	}
}
