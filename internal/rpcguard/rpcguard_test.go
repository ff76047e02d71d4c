package rpcguard_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/rpcguard"
	"github.com/orderstream/orderstream/internal/telemetry"
	"github.com/orderstream/orderstream/internal/testlog"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// panicky serves a command and an audit stream that panic, and a command
// that answers, to show the server survives.
type panicky struct {
	ordersv1.UnimplementedOrderCommandServiceServer
	ordersv1.UnimplementedOrderAuditServiceServer
}

func (panicky) CreateOrder(context.Context, *ordersv1.CreateOrderRequest) (*ordersv1.CreateOrderResponse, error) {
	panic("secret internal state")
}

func (panicky) PlaceOrder(context.Context, *ordersv1.PlaceOrderRequest) (*ordersv1.PlaceOrderResponse, error) {
	return &ordersv1.PlaceOrderResponse{Revision: 1}, nil
}

func (panicky) StreamEvents(*ordersv1.StreamEventsRequest, grpc.ServerStreamingServer[ordersv1.StreamEventsResponse]) error {
	panic("secret internal state")
}

type server struct {
	conn    *grpc.ClientConn
	logs    *testlog.Buffer
	metrics *sdkmetric.ManualReader
	spans   *tracetest.SpanRecorder
}

// start serves panicky on a loopback port as ordersd wires the guard: its
// codec, and its interceptors in the chains, under a traced stats handler.
func start(t *testing.T) server {
	t.Helper()
	s := server{logs: &testlog.Buffer{}, metrics: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder()}
	log := slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(s.logs, nil)))
	g, err := rpcguard.New(log, sdkmetric.NewMeterProvider(sdkmetric.WithReader(s.metrics)))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(s.spans))
	srv := grpc.NewServer(g.ServerOption(), grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp))),
		grpc.ChainUnaryInterceptor(g.Unary, g.Decoded), grpc.ChainStreamInterceptor(g.Stream))
	ordersv1.RegisterOrderCommandServiceServer(srv, panicky{})
	ordersv1.RegisterOrderAuditServiceServer(srv, panicky{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	s.conn, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.conn.Close() })
	return s
}

// raw sends bytes as they are: the client-side codec of a hostile caller.
type raw struct{}

func (raw) Name() string { return "proto" }

func (raw) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }

func (raw) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}

// call sends body to method, unary or as the request of a server stream.
func (s server) call(ctx context.Context, method string, stream bool, body []byte) error {
	var out []byte
	if !stream {
		return s.conn.Invoke(ctx, method, &body, &out, grpc.ForceCodec(raw{}))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs, err := s.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, method, grpc.ForceCodec(raw{}))
	if err != nil {
		return err
	}
	if err := cs.SendMsg(&body); err != nil {
		return err
	}
	if err := cs.CloseSend(); err != nil {
		return err
	}
	return cs.RecvMsg(&out)
}

// Bytes that are not the request message answer INVALID_ARGUMENT, on unary
// and streaming RPCs alike, sent over a real connection.
func TestMalformedRequestsAreInvalidArgument(t *testing.T) {
	s := start(t)
	str := protowire.AppendTag(nil, 1, protowire.BytesType)
	bodies := map[string][]byte{
		"invalid UTF-8":    protowire.AppendString(str, "req-\xff\xfe"),
		"garbage":          {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"truncated length": append(protowire.AppendVarint(str, 100), "abc"...),
		"bad wire type":    protowire.AppendTag(nil, 1, 7),
	}
	for _, m := range []struct {
		name   string
		stream bool
	}{{"/orders.v1.OrderCommandService/PlaceOrder", false}, {"/orders.v1.OrderAuditService/StreamEvents", true}} {
		for kind, body := range bodies {
			if code := status.Code(s.call(t.Context(), m.name, m.stream, body)); code != codes.InvalidArgument {
				t.Errorf("%s with %s: %v, want InvalidArgument", m.name, kind, code)
			}
		}
	}
	// A well-formed request still gets through.
	ok := protowire.AppendString(str, "req-1")
	if err := s.call(t.Context(), "/orders.v1.OrderCommandService/PlaceOrder", false, ok); err != nil {
		t.Fatalf("a valid request after malformed ones: %v", err)
	}
}

// A panicking handler answers a bare INTERNAL, is logged with its trace id
// and counted, and the server goes on serving.
func TestPanicIsRecoveredLoggedAndCounted(t *testing.T) {
	s := start(t)
	for _, m := range []struct {
		name   string
		stream bool
	}{{"/orders.v1.OrderCommandService/CreateOrder", false}, {"/orders.v1.OrderAuditService/StreamEvents", true}} {
		err := s.call(t.Context(), m.name, m.stream, nil)
		if st := status.Convert(err); st.Code() != codes.Internal || strings.Contains(st.Message(), "secret") {
			t.Fatalf("%s panicked: %v, want a bare Internal", m.name, err)
		}
	}
	if err := s.call(t.Context(), "/orders.v1.OrderCommandService/PlaceOrder", false, nil); err != nil {
		t.Fatalf("after the panics: %v", err)
	}

	// The server span ends when gRPC reports the end of the RPC, which may
	// come after the client has its answer: wait for it rather than race.
	ended := func(id string) bool {
		for _, sp := range s.spans.Ended() {
			if sp.SpanContext().TraceID().String() == id {
				return true
			}
		}
		return false
	}
	logged := 0
	for _, line := range strings.Split(strings.TrimSpace(s.logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec["msg"] != "rpc handler panicked" {
			continue
		}
		id, _ := rec["trace_id"].(string)
		if id == "" || !strings.Contains(rec["stack"].(string), "panicky") {
			t.Fatalf("panic logged without its trace id or stack: %s", line)
		}
		for deadline := time.Now().Add(10 * time.Second); !ended(id); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("panic logged with trace id %s, which no server span carries", id)
			}
		}
		logged++
	}
	if logged != 2 {
		t.Fatalf("%d panics logged, want 2:\n%s", logged, s.logs.String())
	}

	var rm metricdata.ResourceMetrics
	if err := s.metrics.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	var counted int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "orders.rpc.panics" {
				for _, dp := range sum.DataPoints {
					counted += dp.Value
				}
			}
		}
	}
	if counted != 2 {
		t.Fatalf("orders.rpc.panics = %d, want 2", counted)
	}
}

// A call that ends before any interceptor runs (a second request message
// on a unary call, which grpc-go refuses while reading) keeps nothing of
// its undecodable request: the guard set the decode error aside for an
// interceptor that never comes. Before, each such call kept its partly
// decoded request for good: a megabyte a call, with no token needed.
func TestUndecodableRequestsOfEndedCallsAreNotKept(t *testing.T) {
	s := start(t)
	big := protowire.AppendString(protowire.AppendTag(nil, 2, protowire.BytesType), strings.Repeat("a", 1<<20))
	body := protowire.AppendString(protowire.AppendTag(big, 1, protowire.BytesType), "\xff")
	send := func() {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		cs, err := s.conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true},
			"/orders.v1.OrderCommandService/PlaceOrder", grpc.ForceCodec(raw{}), grpc.MaxCallSendMsgSize(4<<20))
		if err != nil {
			t.Fatal(err)
		}
		_ = cs.SendMsg(&body)
		_ = cs.SendMsg(&body)
		_ = cs.CloseSend()
		var out []byte
		_ = cs.RecvMsg(&out)
	}
	send() // the server's first allocations
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 40 {
		send()
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 16<<20 {
		t.Fatalf("the heap grew by %d MiB over 40 ended calls with a 1 MiB undecodable request each", grew>>20)
	}
}
