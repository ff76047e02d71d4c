package app_test

import (
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// The audit service and the payments manager read the log through the
// traced store, as the command side does: an audit GetOrderHistory call's
// load is a span under its RPC span, and the payment job's load is a span
// under the append of the placement that caused it.
func TestAuditAndPaymentsLoadsAreTraced(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	a := runTraced(t, rec)
	conn := dial(t, a.GRPC)
	cmd := ordersv1.NewOrderCommandServiceClient(conn)
	c, err := cmd.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: "st-c", CustomerId: "c", Currency: "EUR",
		Lines:           []*ordersv1.LineItem{{Sku: "A", Quantity: 1, UnitPrice: 300}},
		ShippingAddress: &ordersv1.Address{Line1: "1", City: "Riga", Country: "LV"}})
	if err != nil {
		t.Fatal(err)
	}
	id := c.GetOrder().GetOrderId()
	p, err := cmd.PlaceOrder(t.Context(), &ordersv1.PlaceOrderRequest{RequestId: "st-p", OrderId: id})
	if err != nil {
		t.Fatal(err)
	}
	audit := ordersv1.NewOrderAuditServiceClient(conn)
	stream, err := audit.StreamEvents(t.Context(), &ordersv1.StreamEventsRequest{OrderIds: []string{id}, FromPosition: p.GetPosition() + 1, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil { // the payment's outcome
		t.Fatal(err)
	}
	if _, err := audit.GetOrderHistory(t.Context(), &ordersv1.GetOrderHistoryRequest{OrderId: id}); err != nil {
		t.Fatal(err)
	}

	// The server span ends after the answer is sent: wait for it.
	has := func(spans []sdktrace.ReadOnlySpan, name string, parent trace.SpanContext) bool {
		for _, s := range spans {
			if o, _ := attr(s, "order.id"); s.Name() == name && o.AsString() == id &&
				s.Parent().TraceID() == parent.TraceID() && s.Parent().SpanID() == parent.SpanID() {
				return true
			}
		}
		return false
	}
	var historyOK, paymentOK bool
	for deadline := time.Now().Add(5 * time.Second); ; {
		spans := rec.Ended()
		historyOK, paymentOK = false, false
		for _, s := range spans {
			switch s.Name() {
			case "orders.v1.OrderAuditService/GetOrderHistory":
				historyOK = historyOK || has(spans, "eventstore.load", s.SpanContext())
			case "payment.job":
				// The job is a child of the placement's append.
				if v, ok := attr(s, "log.position"); ok && uint64(v.AsInt64()) == p.GetPosition() {
					paymentOK = paymentOK || has(spans, "eventstore.load", s.SpanContext())
				}
			}
		}
		if historyOK && paymentOK || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !historyOK {
		t.Error("no eventstore.load span of the order under the GetOrderHistory RPC span")
	}
	if !paymentOK {
		t.Error("no eventstore.load span of the order under the payment job of the placement")
	}
}
