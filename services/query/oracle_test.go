package query_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
	"github.com/orderstream/orderstream/projections"
	"google.golang.org/protobuf/proto"
)

// expected is what a read model at some position must hold, computed here
// from the log and the domain's Evolve alone, independently of the
// projection's code.
type expected struct {
	orders    map[string]*ordersv1.Order
	summaries map[string]map[string]int64 // customer → canonical summary
	skipped   []uint64                    // positions that must be dead letters
}

// expectFromLog folds the log up to position upto (inclusive). Events that
// cannot be decoded, and events that make no sense for their order's state
// (anything but OrderCreated first, a second OrderCreated, a creation under
// another id or without customer or currency), are left out, as the
// projection must leave them out.
func expectFromLog(t *testing.T, e *env, upto uint64) expected {
	t.Helper()
	states := map[string]order.State{}
	revs := map[string]uint64{}
	type spendKey struct{ customer, currency string }
	spend := map[spendKey]int64{}
	var skipped []uint64
	for rec, err := range e.store.Read(t.Context(), 1) {
		if err != nil {
			t.Fatal(err)
		}
		if rec.Position > upto {
			break
		}
		ev, err := convert.DecodeEvent(rec.Type, rec.Data)
		if err != nil {
			skipped = append(skipped, rec.Position)
			continue
		}
		s := states[rec.OrderID]
		c, isCreate := ev.(order.OrderCreated)
		switch {
		case isCreate == s.Exists(),
			isCreate && (c.OrderID != rec.OrderID || c.CustomerID == "" || c.Currency == ""):
			skipped = append(skipped, rec.Position)
			continue
		}
		at := rec.Meta.OccurredAt
		if at.IsZero() {
			at = rec.Time
		}
		s = order.Evolve(s, ev, at)
		states[rec.OrderID] = s
		revs[rec.OrderID] = rec.Position
		switch ev := ev.(type) {
		case order.PaymentAuthorized:
			spend[spendKey{s.CustomerID, s.Currency}] += ev.Amount
		case order.RefundIssued:
			spend[spendKey{s.CustomerID, s.Currency}] -= ev.Amount
		}
	}
	out := expected{orders: map[string]*ordersv1.Order{}, summaries: map[string]map[string]int64{}, skipped: skipped}
	sum := func(customer string) map[string]int64 {
		if out.summaries[customer] == nil {
			out.summaries[customer] = map[string]int64{}
		}
		return out.summaries[customer]
	}
	for id, s := range states {
		out.orders[id] = convert.OrderToProto(s)
		sum(s.CustomerID)[statusKey(convert.StatusToProto(s.Status))]++
	}
	for k, amt := range spend {
		if amt != 0 {
			sum(k.customer)["spend:"+k.currency] = amt
		}
	}
	return out
}

func statusKey(s ordersv1.OrderStatus) string { return "status:" + s.String() }

// canonicalSummary flattens a summary answer for comparison.
func canonicalSummary(s *ordersv1.CustomerSummary) map[string]int64 {
	out := map[string]int64{}
	var total int64
	for _, c := range s.GetOrdersByStatus() {
		out[statusKey(c.GetStatus())] += c.GetCount()
		total += c.GetCount()
	}
	if total != s.GetOrderCount() {
		out["order_count_mismatch"] = s.GetOrderCount() - total
	}
	for _, m := range s.GetLifetimeSpend() {
		out["spend:"+m.GetCurrency()] += m.GetAmount()
	}
	return out
}

// checkServed compares everything the query service serves with want, both
// ways: every expected order and summary is served and nothing else is.
// extraCustomers are customers to ask about besides those want knows.
func checkServed(t *testing.T, e *env, want expected, extraCustomers ...string) {
	t.Helper()
	got := listAll(t, e, &ordersv1.ListOrdersRequest{PageSize: 97})
	customers := map[string]bool{}
	for _, c := range extraCustomers {
		customers[c] = true
	}
	seen := map[string]bool{}
	for _, o := range got {
		customers[o.GetCustomerId()] = true
		if seen[o.GetOrderId()] {
			t.Fatalf("order %s listed twice", o.GetOrderId())
		}
		seen[o.GetOrderId()] = true
		if !proto.Equal(o, want.orders[o.GetOrderId()]) {
			t.Fatalf("order %s served as\n%v\nwant (fold of its history)\n%v", o.GetOrderId(), o, want.orders[o.GetOrderId()])
		}
	}
	if len(got) != len(want.orders) {
		t.Fatalf("read model serves %d orders, the log folds to %d", len(got), len(want.orders))
	}
	for c := range want.summaries {
		customers[c] = true
	}
	for c := range customers {
		res, err := e.q.GetCustomerSummary(t.Context(), &ordersv1.GetCustomerSummaryRequest{CustomerId: c})
		if err != nil {
			t.Fatal(err)
		}
		w := want.summaries[c]
		if w == nil {
			w = map[string]int64{}
		}
		if g := canonicalSummary(res.GetSummary()); !maps.Equal(g, w) {
			t.Fatalf("customer %s summary\n%v\nwant (from the log)\n%v", c, g, w)
		}
	}
}

// checkReadModel compares a read model opened directly (no runner) with
// the log folded up to its own checkpoint: whatever point a run stopped
// at, the committed content and the checkpoint belong together.
func checkReadModel(t *testing.T, e *env, rm *projections.ReadModel, customers []string) uint64 {
	t.Helper()
	ctx := t.Context()
	cp, err := rm.Position(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := expectFromLog(t, e, cp)
	got, _, err := rm.ListOrders(ctx, projections.ListFilter{}, nil, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want.orders) {
		t.Fatalf("at checkpoint %d the read model holds %d orders, the log folds to %d", cp, len(got), len(want.orders))
	}
	for _, o := range got {
		p := convert.OrderToProto(o.State)
		if !proto.Equal(p, want.orders[p.GetOrderId()]) {
			t.Fatalf("at checkpoint %d order %s is\n%v\nwant\n%v", cp, p.GetOrderId(), p, want.orders[p.GetOrderId()])
		}
	}
	all := slices.Concat(customers, slices.Collect(maps.Keys(want.summaries)))
	for _, c := range all {
		s, _, err := rm.GetCustomerSummary(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		g := map[string]int64{}
		for st, n := range s.ByStatus {
			g[statusKey(convert.StatusToProto(st))] = n
		}
		for cur, amt := range s.Spend {
			g["spend:"+cur] = amt
		}
		w := want.summaries[c]
		if w == nil {
			w = map[string]int64{}
		}
		if !maps.Equal(g, w) {
			t.Fatalf("at checkpoint %d customer %s summary\n%v\nwant\n%v", cp, c, g, w)
		}
	}
	return cp
}

// publishEvent appends ev to orderID's events directly, bypassing the
// command side and its checks, as a faulty writer could.
func publishEvent(t *testing.T, e *env, orderID string, ev order.Event) uint64 {
	t.Helper()
	typ, data, err := convert.EncodeEvent(ev)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := e.store.Load(t.Context(), orderID)
	if err != nil {
		t.Fatal(err)
	}
	meta := eventstore.Metadata{RequestID: rid(), Actor: "test", OccurredAt: time.Now()}
	res, err := e.store.Append(t.Context(), orderID, uint64(len(recs)), []eventstore.EventData{{Type: typ, Data: data, Meta: meta}})
	if err != nil {
		t.Fatal(err)
	}
	return res.Position
}

// rebuildRPC runs a rebuild through the admin RPC to its swap and returns
// its last progress report.
func rebuildRPC(ctx context.Context, e *env) (*ordersv1.RebuildReadModelResponse, error) {
	stream, err := e.admin.RebuildReadModel(ctx, &ordersv1.RebuildReadModelRequest{})
	if err != nil {
		return nil, err
	}
	var last *ordersv1.RebuildReadModelResponse
	for {
		p, err := stream.Recv()
		if err != nil {
			if last != nil && last.GetSwapped() {
				return last, nil
			}
			return last, fmt.Errorf("rebuild ended before its swap: %w", err)
		}
		last = p
	}
}
