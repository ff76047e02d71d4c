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

// versions is the version of each event exported.
func versions(evs []*ordersv1.RecordedEvent) (v []uint32) {
	for _, e := range evs {
		v = append(v, e.GetVersion())
	}
	return v
}

// purgedLegacyLog is a log of two orders written before versions were
// recorded, legacy-0 and legacy-1, with legacy-0 purged: it begins at
// legacy-1's first event, position 4.
func purgedLegacyLog(t *testing.T) *env {
	t.Helper()
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
	return e
}

// An export from a time before the log's first event numbers the events
// written before versions were recorded as one from position 0 does, also
// when the first event it reads is not at position 1: the export is of
// some orders, the first of which starts later in the log, or the log's
// first order was purged. They were exported as version 0.
func TestExportFromBeforeTheLogNumbersEventsWithoutVersionsWhereverItsFirstEventIs(t *testing.T) {
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
		e := purgedLegacyLog(t)
		want := versions(collect(t, e, &ordersv1.StreamEventsRequest{}))
		if got := versions(collect(t, e, &ordersv1.StreamEventsRequest{FromTime: before})); !slices.Equal(got, want) {
			t.Errorf("export from before the log: versions %v, want %v as from position 0", got, want)
		}
	})
}

// An export from a position not past the log's first event, on a log whose
// first orders were purged, starts at that event as one from position 0
// does, and numbers the events written before versions were recorded as it
// does. They were exported as version 0.
func TestExportFromBeforeAPurgedLogsFirstPositionNumbersEventsWithoutVersions(t *testing.T) {
	e := purgedLegacyLog(t)
	export := func(from uint64) (pv [][2]uint64) {
		for _, ev := range collect(t, e, &ordersv1.StreamEventsRequest{FromPosition: from}) {
			pv = append(pv, [2]uint64{ev.GetPosition(), uint64(ev.GetVersion())})
		}
		return pv
	}
	want := export(0)
	if len(want) != 3 || want[0] != [2]uint64{4, 1} {
		t.Fatalf("export from position 0: (position, version) %v, want legacy-1's three events from position 4, version 1", want)
	}
	for _, from := range []uint64{2, 4} {
		if got := export(from); !slices.Equal(got, want) {
			t.Errorf("export from position %d: (position, version) %v, want %v", from, got, want)
		}
	}
	// Past the first event, the read starts within the orders' histories:
	// the events before versions were recorded are not numbered.
	if got := export(5); len(got) != 2 || got[0] != [2]uint64{5, 0} {
		t.Errorf("export from position 5: (position, version) %v, want positions 5 and 6, version 0", got)
	}
}
