package httpapi_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/httpapi"
	"github.com/orderstream/orderstream/internal/testlog"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// leakyQuery fails the way a buggy or broken service might: with raw error
// text, and with internal statuses carrying debugging details. The real
// services map errors with rpcerr; the gateway must hold the line anyway.
type leakyQuery struct {
	ordersv1.UnimplementedOrderQueryServiceServer
}

func (leakyQuery) GetOrder(_ context.Context, req *ordersv1.GetOrderRequest) (*ordersv1.GetOrderResponse, error) {
	switch req.GetOrderId() {
	case "plain-error":
		return nil, errors.New("open /var/lib/orders/readmodel.db: permission denied")
	case "internal":
		st, _ := status.New(codes.Internal, "sql: database is locked (readmodel.go:42)").
			WithDetails(&errdetails.DebugInfo{StackEntries: []string{"goroutine 7 [running]"}, Detail: "secret"})
		return nil, st.Err()
	case "data-loss":
		return nil, status.Error(codes.DataLoss, "checksum mismatch in /data/nats/ORDERS/1.blk")
	}
	return nil, status.Error(codes.NotFound, "order not found")
}

type leakyAudit struct {
	ordersv1.UnimplementedOrderAuditServiceServer
}

func (leakyAudit) StreamEvents(_ *ordersv1.StreamEventsRequest, s grpc.ServerStreamingServer[ordersv1.StreamEventsResponse]) error {
	if err := s.Send(&ordersv1.StreamEventsResponse{Event: &ordersv1.RecordedEvent{Position: 1, Type: "OrderCreated"}}); err != nil {
		return err
	}
	return errors.New("nats: connection to 10.0.0.7:4222 lost")
}

func TestInternalErrorsAreWithheld(t *testing.T) {
	gs := grpc.NewServer()
	ordersv1.RegisterOrderQueryServiceServer(gs, leakyQuery{})
	ordersv1.RegisterOrderAuditServiceServer(gs, leakyAudit{})
	var logs testlog.Buffer
	base, c := gatewayOver(t, serve(t, gs), httpapi.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))

	for id, code := range map[string]float64{"plain-error": 2, "internal": 13, "data-loss": 15} {
		r := expect(t, do(t, c, "GET", base+"/v1/orders/"+id, ""), 500)
		assertStatusJSON(t, r)
		if r.str("message") != "internal error" || r.get("code") != code || len(r.get("details").([]any)) != 0 {
			t.Errorf("%s: %s", id, r.raw)
		}
		for _, leak := range []string{"/var/lib", "/data", "database", "secret", "goroutine"} {
			if strings.Contains(r.raw, leak) {
				t.Errorf("%s: %q leaked: %s", id, leak, r.raw)
			}
		}
	}
	// The operator still gets the text.
	for _, want := range []string{"permission denied", "database is locked", "checksum mismatch"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}

	// A stream that fails after its first message ends with an error line.
	r := expect(t, do(t, c, "GET", base+"/v1/events", ""), 200)
	lines := strings.Split(strings.TrimSuffix(r.raw, "\n"), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"result"`) ||
		lines[1] != `{"error":{"code":2,"message":"internal error","details":[]}}` {
		t.Fatalf("stream: %q", r.raw)
	}
}

func TestGRPCServerDown(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close() // nothing listens there now
	var logs testlog.Buffer
	base, c := gatewayOver(t, dial(t, addr), httpapi.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))

	for _, req := range []struct{ method, path, body string }{
		{"GET", "/v1/orders/o-1", ""},
		{"POST", "/v1/orders", `{"requestId":"r","customerId":"c","currency":"EUR"}`},
	} {
		r := expect(t, do(t, c, req.method, base+req.path, req.body), 503)
		assertStatusJSON(t, r)
		if r.str("message") != "service unavailable, retry later" || r.get("code") != float64(codes.Unavailable) {
			t.Fatalf("%s %s: %s", req.method, req.path, r.raw)
		}
	}
	if !strings.Contains(logs.String(), addr) {
		t.Errorf("the connection error is not logged:\n%s", logs.String())
	}
	r := expect(t, do(t, c, "GET", base+"/readyz", ""), 503)
	if !strings.Contains(r.str("checks", "grpc"), "TRANSIENT_FAILURE") {
		t.Fatalf("readyz: %s", r.raw)
	}
	expect(t, do(t, c, "GET", base+"/healthz", ""), 200)
}

// /readyz reports an upstream that is down even before any request has
// used its connection (which starts idle), and ConnReady passes once the
// server is reachable.
func TestReadyzConnectsIdleUpstream(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	down := dial(t, addr)
	base, c := gatewayOver(t, down)
	r := expect(t, do(t, c, "GET", base+"/readyz", ""), 503)
	if r.str("checks", "grpc") == "ok" {
		t.Fatalf("readyz: %s", r.raw)
	}
	up := serve(t, grpc.NewServer())
	if err := httpapi.ConnReady(up)(t.Context()); err != nil {
		t.Fatalf("ConnReady of a reachable server: %v", err)
	}
}
