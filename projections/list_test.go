package projections

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
	"google.golang.org/protobuf/proto"
)

// createdAt is a log of OrderCreated events for ids, at position from on,
// all at the instant at.
func createdAt(at time.Time, from uint64, ids ...string) []Item {
	items := make([]Item, len(ids))
	for i, id := range ids {
		items[i] = Item{Rec: eventstore.Recorded{OrderID: id, Position: from + uint64(i), Version: 1, Type: "OrderCreated", Time: at},
			Event: order.OrderCreated{OrderID: id, CustomerID: "c-tie", Currency: "EUR"}}
	}
	return items
}

// listAll pages through f's orders limit at a time and returns their ids.
// Each page starts after the cursor the last one ended with or, byID, after
// a cursor naming only the last order's time and id (a page token issued
// before schema 4).
func listAll(t *testing.T, m *ReadModel, f ListFilter, limit int, byID bool) []string {
	t.Helper()
	var ids []string
	var after *Cursor
	for range 100 {
		page, cursors, _, err := m.ListOrderWire(t.Context(), f, after, limit)
		if err != nil {
			t.Fatal(err)
		}
		for i, b := range page {
			o := &ordersv1.Order{}
			if err := proto.Unmarshal(b, o); err != nil {
				t.Fatal(err)
			}
			if o.GetOrderId() != cursors[i].ID {
				t.Fatalf("order %s listed with the cursor of %s", o.GetOrderId(), cursors[i].ID)
			}
			ids = append(ids, o.GetOrderId())
		}
		if len(page) < limit {
			return ids
		}
		last := cursors[len(cursors)-1]
		if byID {
			last = Cursor{CreatedAt: last.CreatedAt, ID: last.ID}
		}
		after = &last
	}
	t.Fatal("ListOrders did not reach the end in 100 pages")
	return nil
}

// Orders created at one instant list newest first by their place in the
// log, and pages through them miss and repeat none, whatever the page size
// and however the log was batched (an order's row is written in the order
// of its first event in the batch, not in the batch's map order), in a
// model filled event by event, in large batches, and in bulk.
func TestOrdersCreatedAtOneInstantListInLogOrder(t *testing.T) {
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	var tie []string
	for i := range 40 {
		tie = append(tie, fmt.Sprintf("%08x-%02d", uint32(i)*2654435761, i))
	}
	// The log starts past position 1, so that a row number counted from 1
	// is not mistaken for the creation's position.
	items := slices.Concat(createdAt(at.Add(-time.Second), logBase+1, "older"), createdAt(at, logBase+2, tie...),
		createdAt(at.Add(time.Second), logBase+42, "newer"))
	want := []string{"newer"}
	for _, id := range slices.Backward(tie) {
		want = append(want, id)
	}
	want = append(want, "older")

	for _, tc := range []struct {
		name  string
		batch int
		bulk  bool
	}{{"one event a batch", 1, false}, {"batches of 17", 17, false}, {"one batch", len(items), false}, {"bulk batches of 17", 17, true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			m := openModel(t, filepath.Join(t.TempDir(), "rm.db"))
			if tc.bulk {
				done, err := m.bulk(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer func() {
					if err := done(ctx); err != nil {
						t.Fatal(err)
					}
					check(t, m, want)
				}()
			}
			for b := range slices.Chunk(items, tc.batch) {
				if _, _, err := m.Apply(ctx, b); err != nil {
					t.Fatal(err)
				}
			}
			if !tc.bulk {
				check(t, m, want)
			}
		})
	}
}

// logBase is the position before the tie test's log.
const logBase = 1000

// check asserts that every page size lists want, with and without a
// filter served by another index, and that each order is numbered by its
// creation's position (want lists the orders of positions logBase+1 on,
// newest first).
func check(t *testing.T, m *ReadModel, want []string) {
	t.Helper()
	for _, f := range []ListFilter{{}, {CustomerID: "c-tie"}, {Status: order.StatusDraft}} {
		for _, limit := range []int{1, 3, 7, 50} {
			for _, byID := range []bool{false, true} {
				if got := listAll(t, m, f, limit, byID); !slices.Equal(got, want) {
					t.Fatalf("filter %+v, pages of %d (cursor by id: %v): listed\n%v\nwant\n%v", f, limit, byID, got, want)
				}
			}
		}
	}
	// Each order is numbered by the position of its creation, as every
	// read model fed by the same log numbers it.
	rows, err := m.r.QueryContext(t.Context(), `SELECT id, seq FROM orders`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var seq int64
		if err := rows.Scan(&id, &seq); err != nil {
			t.Fatal(err)
		}
		if i := slices.Index(want, id); seq != int64(logBase+len(want)-i) {
			t.Errorf("order %s numbered %d, created at position %d", id, seq, logBase+len(want)-i)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}
