package audit_test

import (
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/api/convert"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// publishLegacy writes three events of order id as a build before versions
// were recorded did: one header per field, no version, no chain.
func publishLegacy(t *testing.T, e *env, id string) {
	t.Helper()
	for i, ev := range []order.Event{order.OrderCreated{OrderID: id, CustomerID: "c", Currency: "EUR"},
		order.ItemAdded{SKU: "A", Quantity: 1, UnitPrice: 100}, order.OrderPlaced{}} {
		typ, data, err := convert.EncodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(e.nstore.Subject(id))
		m.Header.Set(eventstore.HeaderEventType, typ)
		m.Header.Set(eventstore.HeaderOccurredAt, time.Date(2020, 1, 1, 0, 0, i, 0, time.UTC).Format(time.RFC3339Nano))
		m.Data = data
		if _, err := e.js.PublishMsg(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
}

// An export from a time before the log's first event numbers the events
// written before versions were recorded as one from position 0 does, also
// when the first event it reads is not at position 1: the export is of
// some orders, the first of which starts later in the log, or the log's
// first order was purged. They were exported as version 0.
func TestExportFromBeforeTheLogNumbersEventsWithoutVersionsWhereverItsFirstEventIs(t *testing.T) {
	versions := func(evs []*ordersv1.RecordedEvent) (v []uint32) {
		for _, e := range evs {
			v = append(v, e.GetVersion())
		}
		return v
	}
	before := timestamppb.New(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))
	t.Run("some orders", func(t *testing.T) {
		e := startB(t)
		publishLegacy(t, e, "legacy-0")
		publishLegacy(t, e, "legacy-1")
		ids := []string{"legacy-1"}
		want := versions(collect(t, e, &ordersv1.StreamEventsRequest{OrderIds: ids}))
		if !slices.Equal(want, []uint32{1, 2, 3}) {
			t.Fatalf("export of legacy-1 from position 0: versions %v, want [1 2 3]", want)
		}
		if got := versions(collect(t, e, &ordersv1.StreamEventsRequest{OrderIds: ids, FromTime: before})); !slices.Equal(got, want) {
			t.Errorf("export of legacy-1 from before the log: versions %v, want %v", got, want)
		}
	})
	t.Run("first order purged", func(t *testing.T) {
		e := startB(t, eventstore.WithMutableStream()) // to purge an order
		publishLegacy(t, e, "legacy-0")
		publishLegacy(t, e, "legacy-1")
		s, err := e.js.Stream(t.Context(), e.nstore.StreamName())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Purge(t.Context(), jetstream.WithPurgeSubject(e.nstore.Subject("legacy-0"))); err != nil {
			t.Fatal(err)
		}
		want := versions(collect(t, e, &ordersv1.StreamEventsRequest{}))
		if got := versions(collect(t, e, &ordersv1.StreamEventsRequest{FromTime: before})); !slices.Equal(got, want) {
			t.Errorf("export from before the log: versions %v, want %v as from position 0", got, want)
		}
	})
}
