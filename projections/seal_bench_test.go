package projections_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/api/convert"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/keys"
	"github.com/orderstream/orderstream/internal/pii"
	"github.com/orderstream/orderstream/order"
	"github.com/orderstream/orderstream/projections"
)

// BenchmarkRebuildSealing measures what sealing personal data costs a
// rebuild: the same log (-rebuild.events events, orders of 5 whose
// OrderCreated carries an address, two orders per customer) stored in plain
// text and sealed, rebuilt without and with a keyring on the real keys
// bucket, whose cache starts cold, in the same run.
func BenchmarkRebuildSealing(b *testing.B) {
	for _, sealed := range []bool{false, true} {
		name := "plain"
		if sealed {
			name = "sealed"
		}
		b.Run(name, func(b *testing.B) {
			js, store := fileStore(b)
			ctx := context.Background()
			ks, err := keys.Open(ctx, js)
			if err != nil {
				b.Fatal(err)
			}
			master, _ := pii.NewMasterKey(bytes.Repeat([]byte{3}, pii.KeySize))
			var ring *pii.Keyring
			if sealed {
				ring = pii.NewKeyring(ks, master)
			}
			n := *benchEvents
			seedSealed(b, js, store, ring, n)
			for b.Loop() {
				opts := []projections.Option{}
				if sealed {
					opts = append(opts, projections.WithKeyring(pii.NewKeyring(ks, master)))
				}
				d, err := projections.Open(ctx, b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				r, err := projections.NewRunner(store, d, opts...)
				if err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				if err := r.Rebuild(ctx, nil); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(n)/time.Since(t0).Seconds(), "rebuild-events/s")
				_ = r.ReadModel().Close()
			}
		})
	}
}

// seedSealed publishes n events as seedLog does, sealed with ring when it
// is not nil.
func seedSealed(b *testing.B, js jetstream.JetStream, store *eventstore.Store, ring *pii.Keyring, n int) {
	b.Helper()
	at := time.Now().UTC()
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%08x-%07d", uint32(i/5)*2654435761, i/5)
		customer := fmt.Sprintf("c-%d", i/10)
		var e order.Event
		switch i % 5 {
		case 0:
			e = order.OrderCreated{OrderID: id, CustomerID: customer, Currency: "EUR",
				Shipping: &order.Address{Name: "Ada Lovelace", Line1: "1 Analytical Way", City: "London", PostalCode: "N1 9GU", Country: "GB"}}
		case 1:
			e = order.ItemAdded{SKU: "A", Quantity: 2, UnitPrice: 1250}
		case 2:
			e = order.ItemAdded{SKU: "B", Quantity: 1, UnitPrice: 499}
		case 3:
			e = order.OrderPlaced{Subtotal: 2999, Total: 2999}
		case 4:
			e = order.PaymentAuthorized{PaymentRef: "psp", Amount: 2999}
		}
		typ, data, err := convert.EncodeEvent(e)
		if ring != nil {
			typ, data, err = convert.SealEvent(context.Background(), ring, id, customer, e)
		}
		if err != nil {
			b.Fatal(err)
		}
		h, _, err := eventstore.EncodeEvent(eventstore.EventData{Type: typ, Data: data,
			Meta: eventstore.Metadata{RequestID: fmt.Sprint("r-", i), OccurredAt: at}}, uint64(i%5+1))
		if err != nil {
			b.Fatal(err)
		}
		m := &nats.Msg{Subject: store.Subject(id), Header: h, Data: data}
		if _, err := js.PublishMsgAsync(m); err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
}
