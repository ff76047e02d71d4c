package command_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/eventstore/keys"
	"github.com/orderstream/orderstream/internal/pii"
	"github.com/orderstream/orderstream/services/command"
)

// BenchmarkCreateOrderSealing measures what sealing personal data costs an
// append: CreateOrder with a shipping address, called in process onto a
// file-backed stream, in plain text and sealed with keys in the real keys
// bucket, in the same run. "sealed/known" is a customer whose key is
// cached; "sealed/new" a new customer per order, so every order also
// creates (and wraps) a key in the bucket.
func BenchmarkCreateOrderSealing(b *testing.B) {
	for _, mode := range []string{"plain", "sealed/known", "sealed/new"} {
		b.Run(mode, func(b *testing.B) {
			srv := estest.StartServer(b)
			_, js := estest.Connect(b, srv)
			store, err := eventstore.New(b.Context(), js, eventstore.WithStorage(jetstream.FileStorage))
			if err != nil {
				b.Fatal(err)
			}
			var opts []command.Option
			if mode != "plain" {
				ks, err := keys.Open(b.Context(), js)
				if err != nil {
					b.Fatal(err)
				}
				master, _ := pii.NewMasterKey(bytes.Repeat([]byte{3}, pii.KeySize))
				opts = append(opts, command.WithKeyring(pii.NewKeyring(ks, master)))
			}
			svc, err := command.New(store, opts...)
			if err != nil {
				b.Fatal(err)
			}
			addr := &ordersv1.Address{Name: "Ada Lovelace", Line1: "1 Analytical Way", City: "London", PostalCode: "N1 9GU", Country: "GB"}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				customer := "cust-bench"
				if mode == "sealed/new" {
					customer = fmt.Sprintf("cust-%d", i)
				}
				_, err := svc.CreateOrder(b.Context(), &ordersv1.CreateOrderRequest{RequestId: fmt.Sprintf("bench-%d", i), CustomerId: customer,
					Currency: "EUR", Lines: []*ordersv1.LineItem{{Sku: "SKU-1", Quantity: 1, UnitPrice: 999}}, ShippingAddress: addr})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
