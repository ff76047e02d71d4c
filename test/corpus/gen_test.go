package corpus_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/services/command"
	"google.golang.org/grpc/metadata"
)

var write = flag.String("corpus.write", "", "write a new corpus set with this name (e.g. v2) from the current code; refuses an existing set")

// TestWriteCorpus records one history of every event type through the real
// command service and JetStream store, and writes the stored messages as a
// new corpus set. It runs only when asked (-corpus.write), and never
// replaces a set: history written by an older build is the point.
func TestWriteCorpus(t *testing.T) {
	if *write == "" {
		t.Skip("writes the corpus only with -corpus.write=SET")
	}
	dir := filepath.Join(root, *write)
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("corpus set %s exists (or cannot be checked: %v): sets are never regenerated; name a new one", dir, err)
	}
	srv := estest.StartServer(t)
	_, js := estest.Connect(t, srv)
	store, err := eventstore.New(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.NewIncomingContext(t.Context(), metadata.Pairs(command.MDActor, "corpus-writer", command.MDCorrelationID, "corpus"))
	svc, err := command.New(store)
	if err != nil {
		t.Fatal(err)
	}
	if err := record(ctx, svc); err != nil {
		t.Fatal(err)
	}
	head, err := store.Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(t.Context(), eventstore.DefaultStreamName)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= head; seq++ {
		if err := writeMsg(t.Context(), stream, dir, seq); err != nil {
			t.Fatal(err)
		}
	}
}

// writeMsg writes stream message seq to dir as NNN-Type.json.
func writeMsg(ctx context.Context, stream jetstream.Stream, dir string, seq uint64) error {
	raw, err := stream.GetMsg(ctx, seq)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(storedMsg{Subject: raw.Subject, Sequence: raw.Sequence, Time: raw.Time, Headers: raw.Header, Data: raw.Data}, "", "  ")
	if err != nil {
		return err
	}
	rec, err := eventstore.DecodeRawMsg(raw, eventstore.DefaultSubjectPrefix)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("%03d-%s.json", seq, rec.Type)
	return os.WriteFile(filepath.Join(dir, name), append(b, '\n'), 0o644)
}

// record drives three orders through every event type: one delivered, one
// cancelled after payment and refunded, one declined.
func record(ctx context.Context, svc *command.Service) error {
	addr := &ordersv1.Address{Name: "Ada Lovelace", Line1: "12 St James's Square", Line2: "Flat 3", City: "London", Region: "Greater London", PostalCode: "SW1Y 4JH", Country: "GB"}
	home := &ordersv1.Address{Name: "Ada King", Line1: "Ockham Park", City: "Ockham", PostalCode: "GU23 6NG", Country: "GB"}
	line := func(sku string, q, p int64) []*ordersv1.LineItem {
		return []*ordersv1.LineItem{{Sku: sku, Quantity: q, UnitPrice: p}}
	}
	steps := []error{
		// Order a: every step of a delivered order.
		ok(svc.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "a-create", OrderId: "corpus-a", CustomerId: "cust-ada", Currency: "GBP", Lines: line("BOOK-1", 2, 1250), ShippingAddress: addr})),
		ok(svc.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: "a-add", OrderId: "corpus-a", Sku: "PEN-2", Quantity: 1, UnitPrice: 499})),
		ok(svc.ChangeItemQuantity(ctx, &ordersv1.ChangeItemQuantityRequest{RequestId: "a-qty", OrderId: "corpus-a", Sku: "BOOK-1", Quantity: 3})),
		ok(svc.RemoveItem(ctx, &ordersv1.RemoveItemRequest{RequestId: "a-remove", OrderId: "corpus-a", Sku: "PEN-2"})),
		ok(svc.SetShippingAddress(ctx, &ordersv1.SetShippingAddressRequest{RequestId: "a-ship-to", OrderId: "corpus-a", ShippingAddress: home})),
		ok(svc.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: "a-place", OrderId: "corpus-a", Tax: 300})),
		ok(svc.RecordPayment(ctx, &ordersv1.RecordPaymentRequest{RequestId: "a-pay", OrderId: "corpus-a", Outcome: ordersv1.PaymentOutcome_PAYMENT_OUTCOME_AUTHORIZED, PaymentRef: "pay-a", Amount: 4050, Currency: "GBP"})),
		ok(svc.ShipOrder(ctx, &ordersv1.ShipOrderRequest{RequestId: "a-ship", OrderId: "corpus-a", Carrier: "Royal Mail", TrackingNumber: "RM123456785GB"})),
		ok(svc.ConfirmDelivery(ctx, &ordersv1.ConfirmDeliveryRequest{RequestId: "a-deliver", OrderId: "corpus-a"})),
		// Order b: paid, cancelled, refunded.
		ok(svc.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "b-create", OrderId: "corpus-b", CustomerId: "cust-bob", Currency: "EUR", Lines: line("MUG-3", 1, 900), ShippingAddress: home})),
		ok(svc.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: "b-place", OrderId: "corpus-b"})),
		ok(svc.RecordPayment(ctx, &ordersv1.RecordPaymentRequest{RequestId: "b-pay", OrderId: "corpus-b", Outcome: ordersv1.PaymentOutcome_PAYMENT_OUTCOME_AUTHORIZED, PaymentRef: "pay-b", Amount: 900, Currency: "EUR"})),
		ok(svc.CancelOrder(ctx, &ordersv1.CancelOrderRequest{RequestId: "b-cancel", OrderId: "corpus-b", Reason: "customer changed their mind"})),
		ok(svc.RecordRefund(ctx, &ordersv1.RecordRefundRequest{RequestId: "b-refund", OrderId: "corpus-b", RefundRef: "ref-b", Amount: 900})),
		// Order c: declined.
		ok(svc.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "c-create", OrderId: "corpus-c", CustomerId: "cust-cy", Currency: "USD", Lines: line("LAMP-4", 1, 15000), ShippingAddress: addr})),
		ok(svc.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: "c-place", OrderId: "corpus-c"})),
		ok(svc.RecordPayment(ctx, &ordersv1.RecordPaymentRequest{RequestId: "c-pay", OrderId: "corpus-c", Outcome: ordersv1.PaymentOutcome_PAYMENT_OUTCOME_DECLINED, PaymentRef: "pay-c", Reason: "insufficient funds", Currency: "USD"})),
	}
	for i, err := range steps {
		if err != nil {
			return fmt.Errorf("step %d: %w", i+1, err)
		}
	}
	return nil
}

// ok keeps an RPC's error; the steps run in order as the slice is built.
func ok[R any](_ R, err error) error { return err }
