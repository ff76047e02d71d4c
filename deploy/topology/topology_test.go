// Package topology_test runs compose.yaml's distributed topology for real,
// as processes on loopback, since a test machine has no container engine:
// the nats-server release go.mod pins, three times, with
// deploy/nats/cluster.conf; ordersd once per container of every ordersd
// service, with that service's environment; an OTLP receiver for Jaeger.
// Every connection between them passes through a proxy of the test's
// (internal/tcpproxy), which stands for the compose network: a service name
// or alias reaches the live containers behind it. The test derives all of
// it from compose.yaml and fails on a service, variable, command or health
// check it does not understand, so the file and the run cannot drift.
//
// TestComposeTopology drives orders through the gateway over REST, kills a
// query node and a command node and checks the rest keeps answering, and
// that the query nodes converge on the same read model.
// TestPartitionStreamLeader cuts the NATS server leading the ORDERS stream
// off from the other two mid-load, by dropping the bytes of their routes'
// links, while a command node stays connected to it and another works on
// the other side; after the majority elects a new leader and takes writes,
// it heals the links and checks that nothing acknowledged was lost,
// duplicated or acknowledged by the cut-off side, that no command was
// rejected on a stale read, that every chain verifies and that the three
// servers agree. It logs what the clients saw.
package topology_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/deploy"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// byRole returns the ordersd instances that run role.
func (r *topology) byRole(role string) []*instance {
	var out []*instance
	for _, name := range r.project.ServiceNames() {
		s := r.services[name]
		if s.kind != ordersdKind || !slices.Contains(strings.Split(deploy.Environment(s.cfg)["ROLES"], ","), role) {
			continue
		}
		out = append(out, s.instances...)
	}
	return out
}

// rest calls the gateway's REST API the way a careful client does: an
// UNAVAILABLE (503) or DEADLINE_EXCEEDED (504) answer is retried with the
// same request, request_id included.
type rest struct {
	t       *testing.T
	base    string
	c       *http.Client
	retries map[int]int // status → retries
}

func newREST(t *testing.T, addr string) *rest {
	return &rest{t: t, base: "http://" + addr, c: &http.Client{Timeout: 15 * time.Second}, retries: map[int]int{}}
}

// retryFor bounds retrying one call.
const retryFor = 30 * time.Second

// do sends req (nil for none) and decodes a 200 answer into res; it returns
// the final status.
func (c *rest) do(method, path string, req, res proto.Message) int {
	c.t.Helper()
	var body []byte
	if req != nil {
		var err error
		if body, err = protojson.Marshal(req); err != nil {
			c.t.Fatal(err)
		}
	}
	deadline := time.Now().Add(retryFor)
	for {
		hr, err := http.NewRequestWithContext(c.t.Context(), method, c.base+path, bytes.NewReader(body))
		if err != nil {
			c.t.Fatal(err)
		}
		hr.Header.Set("Content-Type", "application/json")
		status, b := 0, []byte(nil)
		resp, err := c.c.Do(hr)
		if err == nil {
			b, err = io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			status = resp.StatusCode
		}
		switch {
		case err != nil || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout:
			c.retries[status]++
			if time.Now().After(deadline) {
				c.t.Fatalf("%s %s: still %d (%v) after %s", method, path, status, err, retryFor)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		case status == http.StatusOK && res != nil:
			if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, res); err != nil {
				c.t.Fatalf("%s %s: %v", method, path, err)
			}
		}
		return status
	}
}

// ok is do, failing the test unless the answer is 200.
func (c *rest) ok(method, path string, req, res proto.Message) {
	c.t.Helper()
	if status := c.do(method, path, req, res); status != http.StatusOK {
		c.t.Fatalf("%s %s: status %d", method, path, status)
	}
}

// waitReady waits for the gateway's /readyz, which covers its upstreams.
func (c *rest) waitReady() {
	c.t.Helper()
	deadline := time.Now().Add(startWait)
	for {
		res, err := c.c.Get(c.base + "/readyz")
		if err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("gateway not ready: %v %v", res, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// order tracks one order driven through the gateway.
type order struct {
	id       string
	position uint64 // the log position of the last change the client saw
}

// placeOrder creates an order with a line and an address, adds an item and
// places it.
func placeOrder(api *rest, id string) *order {
	api.t.Helper()
	o := &order{id: id}
	var created ordersv1.CreateOrderResponse
	api.ok("POST", "/v1/orders", &ordersv1.CreateOrderRequest{RequestId: id + "-create", OrderId: id, CustomerId: "topology", Currency: "EUR",
		Lines:           []*ordersv1.LineItem{{Sku: "BASE", Quantity: 1, UnitPrice: 1000}},
		ShippingAddress: &ordersv1.Address{Line1: "1 Main St", City: "Lviv", Country: "UA"}}, &created)
	var added ordersv1.AddItemResponse
	api.ok("POST", "/v1/orders/"+id+"/items", &ordersv1.AddItemRequest{RequestId: id + "-add", OrderId: id, Sku: "EXTRA", Quantity: 2, UnitPrice: 250}, &added)
	var placed ordersv1.PlaceOrderResponse
	api.ok("POST", "/v1/orders/"+id+":place", &ordersv1.PlaceOrderRequest{RequestId: id + "-place", OrderId: id}, &placed)
	if placed.GetOrder().GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_PLACED || placed.GetOrder().GetTotal() != 1500 {
		api.t.Fatalf("order %s after place: %v", id, placed.GetOrder())
	}
	o.position = placed.GetPosition()
	return o
}

// waitStatus reads the order through the gateway until it has status or
// within has passed; it returns the order as last read.
func waitStatus(api *rest, o *order, status ordersv1.OrderStatus, within time.Duration) *ordersv1.Order {
	api.t.Helper()
	deadline := time.Now().Add(within)
	for {
		var got ordersv1.GetOrderResponse
		api.ok("GET", fmt.Sprintf("/v1/orders/%s?consistency.min_position=%d", o.id, o.position), nil, &got)
		if got.GetOrder().GetStatus() == status || time.Now().After(deadline) {
			o.position = max(o.position, got.GetPosition())
			return got.GetOrder()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// paymentWait bounds waiting for the payments manager to pay an order; it
// takes well under a second.
const paymentWait = 15 * time.Second

// waitPaid waits for the payments manager to pay the order, failing the
// test when it stays placed: a placed order is charged once, whichever
// payments worker is active and whichever command node records it.
func waitPaid(api *rest, o *order) {
	api.t.Helper()
	got := waitStatus(api, o, ordersv1.OrderStatus_ORDER_STATUS_PAID, paymentWait)
	if got.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_PAID || got.GetPaymentRef() == "" {
		api.t.Fatalf("order %s after %v: %v, want paid with a payment reference", o.id, paymentWait, got)
	}
}

// shipAndDeliver takes a paid order to delivered and checks its audit
// trail: every event in its history, the chain verified.
func shipAndDeliver(api *rest, o *order) {
	api.t.Helper()
	api.ok("POST", "/v1/orders/"+o.id+":ship", &ordersv1.ShipOrderRequest{RequestId: o.id + "-ship", OrderId: o.id, Carrier: "UP", TrackingNumber: "T-" + o.id}, nil)
	var delivered ordersv1.ConfirmDeliveryResponse
	api.ok("POST", "/v1/orders/"+o.id+":deliver", &ordersv1.ConfirmDeliveryRequest{RequestId: o.id + "-deliver", OrderId: o.id}, &delivered)
	if delivered.GetOrder().GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_DELIVERED {
		api.t.Fatalf("order %s: %v after delivery", o.id, delivered.GetOrder())
	}
	o.position = delivered.GetPosition()
	var h ordersv1.GetOrderHistoryResponse
	api.ok("GET", "/v1/orders/"+o.id+"/history", nil, &h)
	var types []string
	for _, e := range h.GetEvents() {
		types = append(types, e.GetType())
	}
	// Created, item added, placed, payment authorized, shipped, delivered:
	// the payment once, however many payments workers run.
	if len(types) != 6 {
		api.t.Fatalf("order %s: history %v, want 6 events", o.id, types)
	}
	var v ordersv1.VerifyOrderResponse
	api.ok("POST", "/v1/orders/"+o.id+":verify", &ordersv1.VerifyOrderRequest{OrderId: o.id}, &v)
	if !v.GetOk() || v.GetEventsChecked() != 6 {
		api.t.Fatalf("order %s: verification %v", o.id, &v)
	}
}

// lifecycle drives one order from creation to delivery through the
// gateway; payments pay it in between.
func lifecycle(api *rest, id string) *order {
	api.t.Helper()
	o := placeOrder(api, id)
	waitPaid(api, o)
	shipAndDeliver(api, o)
	return o
}

func TestComposeTopology(t *testing.T) {
	top := newTopology(t)
	start := time.Now()
	top.up()
	gateways := top.byRole("gateway")
	if len(gateways) == 0 {
		t.Fatal("compose.yaml runs no gateway")
	}
	api := newREST(t, gateways[0].httpAddr())
	api.waitReady()
	t.Logf("compose.yaml up as processes in %v", time.Since(start).Round(time.Millisecond))

	orders := []*order{lifecycle(api, "topo-1")}

	// One node of each role that has a peer goes down; the rest keep
	// answering, through the same gateway. A role with one node is
	// killed and restarted before it must answer again.
	var down []*instance
	for n, role := range []string{"query", "command"} {
		nodes := top.byRole(role)
		if len(nodes) == 0 {
			t.Fatalf("compose.yaml runs no %s node", role)
		}
		victim := nodes[0]
		top.kill(victim)
		t.Logf("killed %s (%s)", victim.name, role)
		if len(nodes) == 1 {
			top.restart(victim)
		} else {
			down = append(down, victim)
		}
		orders = append(orders, lifecycle(api, fmt.Sprintf("topo-down-%d", n)))
		for i := range 3 {
			o := placeOrder(api, fmt.Sprintf("topo-down-%d-%d", n, i))
			waitPaid(api, o)
			orders = append(orders, o)
		}
	}
	// The killed nodes come back, as compose's restart policy has them,
	// on their data: the query node catches its read model up.
	for _, v := range down {
		top.restart(v)
	}
	orders = append(orders, lifecycle(api, "topo-after"))

	// Both (all) query nodes converge on the same read model.
	var head uint64
	for _, o := range orders {
		head = max(head, o.position)
	}
	var first map[string]*ordersv1.Order
	var firstName string
	for _, q := range top.byRole("query") {
		got := readModel(t, q.grpcAddr(), head)
		for _, o := range orders {
			if _, ok := got[o.id]; !ok {
				t.Fatalf("%s: order %s missing from the read model", q.name, o.id)
			}
		}
		if first == nil {
			first, firstName = got, q.name
			continue
		}
		if len(got) != len(first) {
			t.Fatalf("%s has %d orders, %s %d", q.name, len(got), firstName, len(first))
		}
		for id, o := range first {
			if !proto.Equal(o, got[id]) {
				t.Fatalf("order %s differs between %s and %s:\n%v\n%v", id, firstName, q.name, o, got[id])
			}
		}
	}

	// Traces reach the trace collector compose names.
	if top.otlp != nil {
		deadline := time.Now().Add(30 * time.Second)
		for !slices.Contains(top.otlp.Names(), "POST /v1/orders") {
			if time.Now().After(deadline) {
				t.Fatalf("no gateway span reached the trace collector; got %d spans", len(top.otlp.Names()))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("%d orders through the gateway, %d query nodes agree at position %d; client retries by status: %v; %v in all",
		len(orders), len(top.byRole("query")), head, api.retries, time.Since(start).Round(time.Millisecond))
}

// readModel lists every order of a query node once it has applied head,
// asking it directly over gRPC.
func readModel(t *testing.T, addr string, head uint64) map[string]*ordersv1.Order {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	q := ordersv1.NewOrderQueryServiceClient(conn)
	out := map[string]*ordersv1.Order{}
	req := &ordersv1.ListOrdersRequest{PageSize: 500, Consistency: &ordersv1.Consistency{MinPosition: head}}
	deadline := time.Now().Add(retryFor)
	for {
		res, err := q.ListOrders(t.Context(), req)
		if err != nil {
			// A node that was down may still be catching up past head.
			if status.Code(err) == codes.Unavailable && req.PageToken == "" && time.Now().Before(deadline) {
				continue
			}
			t.Fatalf("%s: %v", addr, err)
		}
		for _, o := range res.GetOrders() {
			out[o.GetOrderId()] = o
		}
		if res.GetNextPageToken() == "" {
			return out
		}
		req.PageToken, req.Consistency = res.GetNextPageToken(), nil
	}
}
