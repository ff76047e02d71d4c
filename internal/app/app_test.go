package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/internal/app"
	"github.com/orderstream/orderstream/internal/app/apptest"
	"github.com/orderstream/orderstream/internal/rpcerr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
)

// run starts the whole system in-process on dir and returns its addresses
// and a stop function that waits for a clean shutdown.
func run(t *testing.T, dir string, extra ...string) (app.Addrs, func()) {
	t.Helper()
	vars := map[string]string{"DATA_DIR": dir}
	for i := 0; i+1 < len(extra); i += 2 {
		vars[extra[i]] = extra[i+1]
	}
	return apptest.Start(t, vars)
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func TestRunServesAndSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	addrs, stop := run(t, dir)
	if addrs.NATS == "" {
		t.Fatal("embedded NATS address not reported")
	}
	conn := dial(t, addrs.GRPC)
	ctx := t.Context()

	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "orders.v1.OrderCommandService"})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", h, err)
	}
	assertReflection(t, conn)

	cmd := ordersv1.NewOrderCommandServiceClient(conn)
	created, err := cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "r-1", CustomerId: "c-1", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	stop()

	// Same data directory: the order is still there, and the retried
	// request is still recognised.
	addrs, _ = run(t, dir)
	cmd = ordersv1.NewOrderCommandServiceClient(dial(t, addrs.GRPC))
	again, err := cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "r-1", CustomerId: "c-1", Currency: "EUR", OrderId: created.GetOrder().GetOrderId()})
	if err != nil {
		t.Fatalf("retry after restart: %v", err)
	}
	if again.GetPosition() != created.GetPosition() {
		t.Fatalf("retry after restart answered position %d, original %d", again.GetPosition(), created.GetPosition())
	}
	placed, err := cmd.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: "r-2", OrderId: created.GetOrder().GetOrderId(), Sku: "A", Quantity: 1, UnitPrice: 5})
	if err != nil || placed.GetOrder().GetVersion() != 2 {
		t.Fatalf("after restart: %v %v", placed, err)
	}
}

func assertReflection(t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	res, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range res.GetListServicesResponse().GetService() {
		found = found || s.GetName() == "orders.v1.OrderCommandService"
	}
	if !found {
		t.Fatalf("reflection does not list the command service: %v", res)
	}
}

// readStatus is the status of a REST read of url that waits for the read
// model to reach position 1 (X-Min-Position).
func readStatus(t *testing.T, url string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Min-Position", "1")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

func getJSON(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	return res.StatusCode, body
}

// /readyz follows the NATS connection: 503 naming the failed checks while
// NATS is gone, 200 again once it is back, without restarting ordersd.
func TestReadyzFollowsNATS(t *testing.T) {
	ns := estest.StartServer(t)
	addrs, _ := run(t, t.TempDir(), "NATS_URL", ns.ClientURL())
	base := "http://" + addrs.HTTP
	waitStatus(t, base+"/readyz", http.StatusOK)
	if code, _ := getJSON(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("healthz: %d", code)
	}
	restart := estest.Stop(t, ns)
	// The background evaluation notices within a moment; the probe
	// itself answers at once from what it last found.
	// Either check may fail first: what is asserted is that both come to
	// fail, not which is first.
	for deadline := time.Now().Add(20 * time.Second); ; {
		code, body := getJSON(t, base+"/readyz")
		checks, _ := body["checks"].(map[string]any)
		if code == http.StatusServiceUnavailable && checks["nats"] != "ok" && checks["stream"] != "ok" {
			// A probe gets no internal text: the store's errors name its
			// requests and the server's answers.
			if s, _ := checks["stream"].(string); strings.Contains(s, "eventstore") || strings.Contains(s, "jetstream") {
				t.Fatalf("the stream check tells a probe %q", s)
			}
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("nats or stream check still passes during the outage: %d %v", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _ := getJSON(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("healthz must stay up during a NATS outage: %d", code)
	}
	restart()
	waitStatus(t, base+"/readyz", http.StatusOK)
}

// waitStatus polls a probe until it answers want, as an orchestrator does.
func waitStatus(t *testing.T, url string, want int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := getJSON(t, url)
		if code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %d %v", url, code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// With every role on, a placed order is paid by the payments manager
// through the built-in simulator, and the read model shows it.
func TestPlacedOrdersArePaid(t *testing.T) {
	addrs, _ := run(t, t.TempDir())
	conn := dial(t, addrs.GRPC)
	ctx := t.Context()
	cmd := ordersv1.NewOrderCommandServiceClient(conn)
	c, err := cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "pay-1", CustomerId: "c", Currency: "EUR",
		Lines:           []*ordersv1.LineItem{{Sku: "A", Quantity: 1, UnitPrice: 999}},
		ShippingAddress: &ordersv1.Address{Line1: "1", City: "Oslo", Country: "NO"}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := cmd.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: "pay-2", OrderId: c.GetOrder().GetOrderId()})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := ordersv1.NewOrderAuditServiceClient(conn).StreamEvents(ctx, &ordersv1.StreamEventsRequest{
		OrderIds: []string{c.GetOrder().GetOrderId()}, FromPosition: p.GetPosition() + 1, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if ev.GetEvent().GetType() != "PaymentAuthorized" || ev.GetEvent().GetActor() != "payments" || ev.GetEvent().GetCausationId() == "" {
		t.Fatalf("after placing: %v", ev.GetEvent())
	}
	g, err := ordersv1.NewOrderQueryServiceClient(conn).GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: c.GetOrder().GetOrderId(),
		Consistency: &ordersv1.Consistency{MinPosition: ev.GetEvent().GetPosition()}})
	if err != nil || g.GetOrder().GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_PAID || g.GetOrder().GetPaidAmount() != 999 {
		t.Fatalf("read model: %v %v", g, err)
	}
}

func TestRolesSplitTheServices(t *testing.T) {
	addrs, _ := run(t, t.TempDir(), "ROLES", "command")
	conn := dial(t, addrs.GRPC)
	if _, err := ordersv1.NewOrderCommandServiceClient(conn).CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: "r", CustomerId: "c", Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	_, err := ordersv1.NewOrderQueryServiceClient(conn).GetOrder(t.Context(), &ordersv1.GetOrderRequest{OrderId: "x"})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("query on a command-only node: %v", err)
	}
	if code, _ := getJSON(t, "http://"+addrs.HTTP+"/healthz"); code != http.StatusOK {
		t.Fatalf("healthz: %d", code)
	}
}

// A gateway-only node serves REST from services running in other
// processes, named by COMMAND_ADDR, QUERY_ADDR, AUDIT_ADDR and
// PAYMENTS_ADDR.
func TestGatewayRoleCallsRemoteServices(t *testing.T) {
	ns := estest.StartServer(t)
	commands, _ := run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "command,payments")
	queries, _ := run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "query,audit")
	front, _ := run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "gateway",
		"COMMAND_ADDR", commands.GRPC, "QUERY_ADDR", queries.GRPC, "AUDIT_ADDR", queries.GRPC, "PAYMENTS_ADDR", commands.GRPC)
	res, err := http.Post("http://"+front.HTTP+"/v1/orders", "application/json",
		strings.NewReader(`{"requestId":"gw-1","orderId":"gw-order","customerId":"c","currency":"EUR"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("create through the gateway node: %d", res.StatusCode)
	}
	hist, err := http.Get("http://" + front.HTTP + "/v1/orders/gw-order/history")
	if err != nil {
		t.Fatal(err)
	}
	hist.Body.Close()
	if hist.StatusCode != http.StatusOK {
		t.Fatalf("history through the gateway node: %d", hist.StatusCode)
	}
	if code := readStatus(t, "http://"+front.HTTP+"/v1/orders/gw-order"); code != http.StatusOK {
		t.Fatalf("read through the gateway node from the query node: %d", code)
	}
}

// The stream's replicas and duplicate window are the command role's to set:
// a process of another role started without DUPLICATE_WINDOW (or
// STREAM_REPLICAS) brought the command nodes' settings back to the
// defaults. One that starts first still creates the stream with its own.
func TestOnlyTheCommandRoleSetsTheStreamsSettings(t *testing.T) {
	ns := estest.StartServer(t)
	window := func() time.Duration {
		_, js := estest.Connect(t, ns)
		st, err := js.Stream(t.Context(), "ORDERS")
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().Config.Duplicates
	}
	// A process of another role that starts first still creates the
	// stream with its settings (replicated, in a cluster).
	run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "audit", "DUPLICATE_WINDOW", "45s")
	if w := window(); w != 45*time.Second {
		t.Fatalf("the window of the stream an audit node created: %v, want its 45s", w)
	}
	core, _ := run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "command,query,audit", "DUPLICATE_WINDOW", "2m")
	if w := window(); w != 2*time.Minute {
		t.Fatalf("the command node's window: %v, want 2m", w)
	}
	run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "payments", "COMMAND_ADDR", core.GRPC)
	run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "gateway",
		"COMMAND_ADDR", core.GRPC, "QUERY_ADDR", core.GRPC, "AUDIT_ADDR", core.GRPC, "PAYMENTS_ADDR", core.GRPC)
	if w := window(); w != 2*time.Minute {
		t.Fatalf("the window after payments and gateway nodes started without DUPLICATE_WINDOW: %v, want the command node's 2m", w)
	}
}

// compose.yaml's split: the command, query and audit roles in one process,
// payments in another, the gateway and the console in a third. The front
// end reaches the payment and deadline admin services at PAYMENTS_ADDR,
// which it used to send to COMMAND_ADDR: 501, "unknown service".
func TestFrontEndCallsPaymentsAtItsAddress(t *testing.T) {
	ns := estest.StartServer(t)
	core, _ := run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "command,query,audit")
	pay, _ := run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "payments", "COMMAND_ADDR", core.GRPC)
	front, _ := run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "gateway,console",
		"COMMAND_ADDR", core.GRPC, "QUERY_ADDR", core.GRPC, "AUDIT_ADDR", core.GRPC, "PAYMENTS_ADDR", pay.GRPC)
	base := "http://" + front.HTTP
	for _, path := range []string{"/v1/admin/parked-payments", "/v1/admin/deadlines"} {
		if code, body := getJSON(t, base+path); code != http.StatusOK {
			t.Errorf("GET %s through the front end: %d %v", path, code, body)
		}
	}
	res, err := http.Get(base + "/console/operations")
	if err != nil {
		t.Fatal(err)
	}
	page, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if unreached := strings.Contains(string(page), "does not run where this console points"); err != nil || res.StatusCode != http.StatusOK || unreached {
		t.Errorf("the console's operations page: %d %v; the payments role's services unreached: %v", res.StatusCode, err, unreached)
	}
	waitStatus(t, base+"/readyz", http.StatusOK)
	if _, body := getJSON(t, base+"/readyz"); body["checks"].(map[string]any)["upstream_payments"] != "ok" {
		t.Errorf("readyz: %v, want the upstream_payments check", body)
	}
}

// ordersd joins a NATS server that demands a user and password, through
// the configuration variables.
func TestExternalNATSWithCredentials(t *testing.T) {
	ns := securedNATS(t, func(o *server.Options) { o.Username, o.Password = "orders", "s3cret-pass" })
	url := fmt.Sprintf("nats://%s", ns.Addr().String())
	addrs, _ := run(t, t.TempDir(), "NATS_URL", url, "NATS_USER", "orders", "NATS_PASSWORD", "s3cret-pass", "ROLES", "command")
	cmd := ordersv1.NewOrderCommandServiceClient(dial(t, addrs.GRPC))
	if _, err := cmd.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: "cred-1", CustomerId: "c", Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	refused(t, "NATS_URL", url, "NATS_USER", "orders", "NATS_PASSWORD", "wrong")
}

// Offered more than it can take, ordersd sheds load with RESOURCE_EXHAUSTED
// (never INTERNAL), loses no acknowledged command, and serves normally
// again once the burst is over.
func TestOverloadShedsAndRecovers(t *testing.T) {
	addrs, _ := run(t, t.TempDir(), "MAX_IN_FLIGHT", "4", "ROLES", "command,audit")
	conn := dial(t, addrs.GRPC)
	cmd := ordersv1.NewOrderCommandServiceClient(conn)
	var mu sync.Mutex
	var okIDs []string
	shed := 0
	var wg sync.WaitGroup
	for i := range 300 {
		wg.Go(func() {
			id := fmt.Sprintf("burst-%d", i)
			_, err := cmd.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: id, OrderId: id, CustomerId: "c", Currency: "EUR"})
			mu.Lock()
			defer mu.Unlock()
			switch status.Code(err) {
			case codes.OK:
				okIDs = append(okIDs, id)
			case codes.ResourceExhausted:
				// Marked busy, which clients (the payments manager) tell
				// from a request too large to ever take.
				if !rpcerr.IsBusy(err) {
					t.Errorf("shed without the busy reason: %v", err)
				}
				shed++
			default:
				t.Errorf("under overload: %v", err)
			}
		})
	}
	wg.Wait()
	if shed == 0 {
		t.Fatal("300 concurrent calls against 4 slots: nothing was shed")
	}
	audit := ordersv1.NewOrderAuditServiceClient(conn)
	for _, id := range okIDs {
		if _, err := audit.GetOrderHistory(t.Context(), &ordersv1.GetOrderHistoryRequest{OrderId: id}); err != nil {
			t.Fatalf("acknowledged order %s: %v", id, err)
		}
	}
	if _, err := cmd.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: "after", CustomerId: "c", Currency: "EUR"}); err != nil {
		t.Fatalf("after the burst: %v", err)
	}
	t.Logf("%d served, %d shed", len(okIDs), shed)
}

// A payments manager that cannot follow the log keeps the process out of
// readiness, naming the check, and recovers by itself once the obstacle
// is gone: placed orders are then paid.
func TestPaymentsNotFollowingIsNotReady(t *testing.T) {
	ns := estest.StartServer(t)
	// A first node creates the stream.
	_, stop := run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "command")
	stop()
	_, js := estest.Connect(t, ns)
	// A consumer named like the manager's that it cannot update (the
	// deliver policy of a durable is fixed), as an operator might leave.
	if _, err := js.CreateConsumer(t.Context(), "ORDERS", jetstream.ConsumerConfig{
		Durable: "payments", AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverNewPolicy}); err != nil {
		t.Fatal(err)
	}
	addrs, _ := run(t, t.TempDir(), "NATS_URL", ns.ClientURL())
	base := "http://" + addrs.HTTP
	waitStatus(t, base+"/readyz", http.StatusServiceUnavailable)
	_, body := getJSON(t, base+"/readyz")
	if checks, _ := body["checks"].(map[string]any); checks["payments"] == "ok" || checks["nats"] != "ok" {
		t.Fatalf("readyz: %v", body)
	}
	cmd := ordersv1.NewOrderCommandServiceClient(dial(t, addrs.GRPC))
	c, err := cmd.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: "np-1", CustomerId: "c", Currency: "EUR",
		Lines: []*ordersv1.LineItem{{Sku: "A", Quantity: 1, UnitPrice: 9}}, ShippingAddress: &ordersv1.Address{Line1: "1", City: "Oslo", Country: "NO"}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := cmd.PlaceOrder(t.Context(), &ordersv1.PlaceOrderRequest{RequestId: "np-2", OrderId: c.GetOrder().GetOrderId()})
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteConsumer(t.Context(), "ORDERS", "payments"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, base+"/readyz", http.StatusOK)
	stream, err := ordersv1.NewOrderAuditServiceClient(dial(t, addrs.GRPC)).StreamEvents(t.Context(), &ordersv1.StreamEventsRequest{
		OrderIds: []string{c.GetOrder().GetOrderId()}, FromPosition: p.GetPosition() + 1, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := stream.Recv(); err != nil || ev.GetEvent().GetType() != "PaymentAuthorized" {
		t.Fatalf("after recovery: %v %v", ev, err)
	}
}

// A query node whose projection cannot follow the log (NATS refuses to
// create its consumer, as an account's consumer limit or a permission
// change would) answers no read at a new position: it leaves readiness,
// naming the projection, rather than staying ready on a model that no
// longer moves.
func TestProjectionNotFollowingIsNotReady(t *testing.T) {
	ns := securedNATS(t, func(o *server.Options) {
		o.Users = []*server.User{{Username: "ordersd", Password: "secret-pass", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{">"},
				Deny: []string{"$JS.API.CONSUMER.CREATE.ORDERS", "$JS.API.CONSUMER.CREATE.ORDERS.>"}},
		}}}
	})
	a, _ := run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "NATS_USER", "ordersd", "NATS_PASSWORD", "secret-pass",
		"ROLES", "command,query")
	conn := dial(t, a.GRPC)
	c, err := ordersv1.NewOrderCommandServiceClient(conn).CreateOrder(t.Context(),
		&ordersv1.CreateOrderRequest{RequestId: "nf-1", OrderId: "nf-1", CustomerId: "c", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ordersv1.NewOrderQueryServiceClient(conn).GetOrder(t.Context(), &ordersv1.GetOrderRequest{
		OrderId: "nf-1", Consistency: &ordersv1.Consistency{MinPosition: c.GetPosition()}})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("read at the create's position: %v, want UNAVAILABLE (the projection does not follow)", err)
	}
	base := "http://" + a.HTTP
	waitStatus(t, base+"/readyz", http.StatusServiceUnavailable)
	_, body := getJSON(t, base+"/readyz")
	if checks, _ := body["checks"].(map[string]any); checks["projection"] == "ok" || checks["nats"] != "ok" {
		t.Fatalf("readyz: %v", body)
	}
}

// A call's metadata is bounded well below grpc-go's default of 16 MiB,
// which it reads before any interceptor, authentication included: a call
// with a megabyte of it is refused, one with a usual token and trace
// context is served.
func TestOversizedMetadataIsRefused(t *testing.T) {
	addrs, _ := run(t, t.TempDir(), "ROLES", "command")
	hc := healthpb.NewHealthClient(dial(t, addrs.GRPC))
	big := metadata.AppendToOutgoingContext(t.Context(), "x-padding", strings.Repeat("a", 1<<20))
	if _, err := hc.Check(big, &healthpb.HealthCheckRequest{}); err == nil {
		t.Fatal("a call with 1 MiB of metadata was served")
	}
	usual := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+strings.Repeat("t", 2048),
		"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if _, err := hc.Check(usual, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("a call with usual metadata: %v", err)
	}
}
