package projections

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
)

var foldSeeds = flag.Int("fold.seeds", 20, "random logs TestModelIsTheLogsFoldHoweverBatched checks")

// The read model a log leaves is the log's fold, however its events come
// in batches: applied live (each batch held or committed, some batches
// delivered again with the events before them, some events given as
// pointers) and filled in bulk as a
// rebuild does (with its carry between batches sometimes dropped), the
// model's rows, their seq and indexed columns, its point reads, summaries,
// dead letters and checkpoint equal an independent fold of the log one
// event at a time, and on the live path each order's last published
// change is its state. The logs are random, from fixed seeds
// (-fold.seeds sets how many).
func TestModelIsTheLogsFoldHoweverBatched(t *testing.T) {
	ctx := t.Context()
	var orders, dead, carried int
	for seed := range uint64(*foldSeeds) {
		rng := rand.New(rand.NewPCG(seed, 42))
		items := propLog(rng, 20+rng.IntN(120), 2+rng.IntN(5), 1+rng.IntN(3))
		// One log in ten has many orders, filled in large batches: a
		// batch of a bulk fill then creates more orders than one
		// statement inserts (insertRows).
		wide := seed%10 == 9
		if wide {
			items = propLog(rng, 1000+rng.IntN(500), 300+rng.IntN(100), 1+rng.IntN(3))
		}
		want := propFold(items)
		orders += len(want.orders)
		dead += len(want.dead)
		dir := t.TempDir()

		live := openModel(t, filepath.Join(dir, "live.db"))
		var changes []Change
		maxB := 1 + rng.IntN(12)
		applied := 0
		liveItems := pointersToSome(rng, items)
		for _, b := range randomBatches(rng, liveItems, maxB) {
			if applied > 0 && rng.IntN(4) == 0 {
				back := rng.IntN(applied) + 1
				b = append(slices.Clone(liveItems[applied-back:applied]), b...)
			}
			if _, _, _, err := live.apply(ctx, b, &changes, rng.IntN(2) == 0); err != nil {
				t.Fatal(err)
			}
			applied = int(b[len(b)-1].Rec.Position)
			if rng.IntN(3) == 0 {
				if _, _, err := live.commit(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		if _, _, err := live.commit(ctx); err != nil {
			t.Fatal(err)
		}
		if !propCheck(t, fmt.Sprintf("seed %d live (batches of at most %d)", seed, maxB), live, want) {
			logItems(t, items)
			return
		}
		last := map[string]Change{}
		for _, c := range changes {
			last[c.OrderID] = c
		}
		for id, o := range want.orders {
			if c := last[id]; !reflect.DeepEqual(c.State, o.State) {
				t.Errorf("seed %d: last change of %s: %+v, want %+v", seed, id, c.State, o.State)
			}
		}

		bulk := openModel(t, filepath.Join(dir, "bulk.db"))
		end, err := bulk.bulk(ctx)
		if err != nil {
			t.Fatal(err)
		}
		maxB = 1 + rng.IntN(12)
		if wide {
			maxB = 4*insertRows + rng.IntN(600)
		}
		dropCarry := rng.IntN(3) == 0
		for _, b := range randomBatches(rng, items, maxB) {
			if _, _, err := bulk.Apply(ctx, b); err != nil {
				t.Fatal(err)
			}
			carried += len(bulk.carry.cur) + len(bulk.carry.prev)
			if dropCarry && rng.IntN(2) == 0 {
				bulk.carry.reset()
			}
		}
		if err := end(ctx); err != nil {
			t.Fatalf("seed %d: end of the bulk fill: %v", seed, err)
		}
		if !propCheck(t, fmt.Sprintf("seed %d bulk (batches of at most %d, carry dropped %v)", seed, maxB, dropCarry), bulk, want) {
			logItems(t, items)
			return
		}
		if err := errors.Join(live.Close(), bulk.Close()); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d orders, %d dead letters, %d orders carried between batches, over %d logs", orders, dead, carried, *foldSeeds)
}

var propBase = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// propLog makes a log of n events over nOrders orders and nCustomers
// customers, in log order with each subject's versions: valid and invalid
// creations, every kind of order event (most of them out of turn for their
// order at some point, which the projection must dead-letter), entries it
// cannot decode, events without an order and customer erasures. A
// subject's versions count its messages, so a creation at version 1 comes
// only first on its subject, as the append writes one: a log repeating it
// is TestBulkFillOverwritesARepeatedCreationAsLiveDoes's business.
func propLog(rng *rand.Rand, n, nOrders, nCustomers int) []Item {
	var items []Item
	versions := map[string]uint64{}
	oid := func() string { return fmt.Sprintf("o-%d", rng.IntN(nOrders)) }
	cid := func() string { return fmt.Sprintf("c-%d", rng.IntN(nCustomers)) }
	cur := func() string { return []string{"EUR", "USD"}[rng.IntN(2)] }
	sku := func() string { return fmt.Sprintf("S%d", rng.IntN(3)) }
	addr := func() order.Address {
		return order.Address{Name: "N" + strconv.Itoa(rng.IntN(9)), Line1: "L1", City: "Oslo", Country: "NO"}
	}
	for len(items) < n {
		pos := uint64(len(items) + 1)
		id := oid()
		var ev order.Event
		var err error
		switch k := rng.IntN(26); {
		case k < 5:
			c := order.OrderCreated{OrderID: id, CustomerID: cid(), Currency: cur()}
			if rng.IntN(2) == 0 {
				a := addr()
				c.Shipping = &a
			}
			if rng.IntN(2) == 0 {
				c.Lines = []order.Line{{SKU: sku(), Quantity: 1, UnitPrice: 10}}
			}
			ev = c
		case k == 5: // invalid creations
			switch rng.IntN(3) {
			case 0:
				ev = order.OrderCreated{OrderID: id, CustomerID: cid()}
			case 1:
				ev = order.OrderCreated{OrderID: id + "x", CustomerID: cid(), Currency: "EUR"}
			default:
				ev = order.OrderCreated{OrderID: id, Currency: "EUR"}
			}
		case k < 9:
			ev = order.ItemAdded{SKU: sku(), Quantity: int64(1 + rng.IntN(3)), UnitPrice: int64(1 + rng.IntN(500))}
		case k == 9:
			ev = order.ItemRemoved{SKU: sku()}
		case k == 10:
			ev = order.ItemQuantityChanged{SKU: sku(), Quantity: int64(1 + rng.IntN(5))}
		case k == 11:
			ev = order.ShippingAddressSet{Address: addr()}
		case k == 12:
			ev = order.OrderPlaced{Subtotal: 1, Total: 1, Tax: int64(rng.IntN(3))}
		case k == 13:
			ev = order.PaymentAuthorized{PaymentRef: "p", Amount: int64(1 + rng.IntN(1000))}
		case k == 14:
			ev = order.PaymentDeclined{PaymentRef: "p", Reason: "no"}
		case k == 15:
			ev = order.OrderCancelled{Reason: "r"}
		case k == 16:
			ev = order.OrderShipped{Carrier: "DHL", TrackingNumber: "T" + strconv.Itoa(rng.IntN(99))}
		case k == 17:
			ev = order.OrderDelivered{}
		case k == 18:
			ev = order.RefundIssued{PaymentRef: "p", RefundRef: "r" + strconv.Itoa(int(pos)), Amount: int64(1 + rng.IntN(1000))}
		case k == 19:
			err = errors.New("undecodable")
		case k == 20:
			ev = order.ItemAdded{SKU: "Z", Quantity: 1, UnitPrice: 1}
			id = "" // no order id
		default: // k 21..25: an erasure, sometimes
			if rng.IntN(3) != 0 {
				continue
			}
			id = order.CustomersSubjectID
			ev = order.CustomerForgotten{CustomerID: cid()}
		}
		versions[id]++
		typ := "Broken"
		if ev != nil {
			typ = ev.EventType()
		}
		rec := eventstore.Recorded{OrderID: id, Position: pos, Version: versions[id], Type: typ,
			Time: propBase.Add(time.Duration(pos) * time.Second)}
		if rng.IntN(2) == 0 {
			rec.Meta.OccurredAt = propBase.Add(time.Duration(pos)*time.Second + time.Duration(rng.IntN(1000))*time.Millisecond)
		}
		if err != nil {
			ev = nil
		}
		items = append(items, Item{Rec: rec, Event: ev, Err: err})
	}
	return items
}

// propOrder is an order as the independent fold holds it.
type propOrder struct {
	State    order.State
	Revision uint64
	Seq      uint64
}

// propWant is what the read model must hold after a log.
type propWant struct {
	orders   map[string]*propOrder
	status   map[string]int64 // "customer/status" -> count
	spend    map[string]int64 // "customer/currency" -> amount
	dead     []uint64
	position uint64
}

// propFold folds items one event at a time with order.Evolve, restating
// the projection's rules on its own: an order opens with a valid creation
// for its own id and takes events only after it (anything else, and what
// does not decode, is a dead letter); its seq is its creation's position
// and its revision its last event's; an erasure blanks the personal data
// of the customer's orders; summaries count orders by customer and status
// and net payments less refunds by customer and currency.
func propFold(items []Item) propWant {
	w := propWant{orders: map[string]*propOrder{}, status: map[string]int64{}, spend: map[string]int64{}}
	for _, it := range items {
		pos := it.Rec.Position
		w.position = pos
		if it.Err != nil {
			w.dead = append(w.dead, pos)
			continue
		}
		if f, ok := it.Event.(order.CustomerForgotten); ok {
			for _, o := range w.orders {
				if o.State.CustomerID != f.CustomerID {
					continue
				}
				if o.State.Shipping != nil && !o.State.Shipping.Erased {
					o.State.Shipping = &order.Address{Erased: true}
				}
				if o.State.TrackingNumber != "" {
					o.State.TrackingNumber, o.State.TrackingNumberErased = "", true
				}
			}
			continue
		}
		id := it.Rec.OrderID
		o := w.orders[id]
		c, isCreate := it.Event.(order.OrderCreated)
		switch {
		case id == "",
			o == nil && !isCreate,
			o != nil && isCreate,
			isCreate && (c.OrderID != id || c.CustomerID == "" || c.Currency == ""):
			w.dead = append(w.dead, pos)
			continue
		}
		if o == nil {
			o = &propOrder{Seq: pos}
			w.orders[id] = o
		}
		at := it.Rec.Time
		if !it.Rec.Meta.OccurredAt.IsZero() {
			at = it.Rec.Meta.OccurredAt
		}
		o.State = order.Evolve(o.State, it.Event, at)
		o.Revision = pos
		key := o.State.CustomerID + "/" + o.State.Currency
		switch e := it.Event.(type) {
		case order.PaymentAuthorized:
			w.spend[key] += e.Amount
		case order.RefundIssued:
			w.spend[key] -= e.Amount
		}
	}
	for _, o := range w.orders {
		w.status[fmt.Sprintf("%s/%d", o.State.CustomerID, o.State.Status)]++
	}
	for k, v := range w.spend {
		if v == 0 {
			delete(w.spend, k)
		}
	}
	return w
}

// propCheck compares the read model's rows, point reads, summaries, dead
// letters and checkpoint with w, and reports whether they all agree.
func propCheck(t *testing.T, label string, m *ReadModel, w propWant) bool {
	t.Helper()
	ctx := t.Context()
	ok := true
	fail := func(f string, a ...any) {
		t.Errorf(label+": "+f, a...)
		ok = false
	}
	var (
		seq, createdAt int64
		rev            uint64
		id, customer   string
		status         int
		body           []byte
	)
	seen := map[string]bool{}
	eachRow(t, m, `SELECT seq, id, customer_id, status, created_at, revision, body FROM orders ORDER BY seq`, func() {
		if seen[id] {
			fail("order %s has two rows", id)
		}
		seen[id] = true
		want, exists := w.orders[id]
		if !exists {
			fail("row for %s, which the log never created", id)
			return
		}
		pb, err := readBody(id, customer, body)
		if err != nil {
			t.Fatal(err)
		}
		if got := convert.OrderFromProto(pb); !reflect.DeepEqual(got, want.State) {
			fail("order %s body:\n got %+v\nwant %+v", id, got, want.State)
		}
		if uint64(seq) != want.Seq {
			fail("order %s seq %d, want %d", id, seq, want.Seq)
		}
		if rev != want.Revision {
			fail("order %s revision %d, want %d", id, rev, want.Revision)
		}
		if customer != want.State.CustomerID || order.Status(status) != want.State.Status || createdAt != want.State.CreatedAt.UnixNano() {
			fail("order %s indexed columns (%s,%d,%d), want (%s,%d,%d)", id, customer, status, createdAt,
				want.State.CustomerID, want.State.Status, want.State.CreatedAt.UnixNano())
		}
	}, &seq, &id, &customer, &status, &createdAt, &rev, &body)
	for id := range w.orders {
		if !seen[id] {
			fail("no row for order %s", id)
		}
		o, _, err := m.GetOrder(ctx, id)
		if err != nil || !reflect.DeepEqual(o.State, w.orders[id].State) || o.Revision != w.orders[id].Revision {
			fail("GetOrder(%s) = %+v, %v", id, o, err)
		}
	}
	readMap := func(q string) map[string]int64 {
		out := map[string]int64{}
		var k string
		var v int64
		eachRow(t, m, q, func() {
			if v != 0 {
				out[k] = v
			}
		}, &k, &v)
		return out
	}
	if got := readMap(`SELECT customer_id || '/' || status, count FROM customer_status`); !reflect.DeepEqual(got, w.status) {
		fail("customer_status %v, want %v", got, w.status)
	}
	if got := readMap(`SELECT customer_id || '/' || currency, amount FROM customer_spend`); !reflect.DeepEqual(got, w.spend) {
		fail("customer_spend %v, want %v", got, w.spend)
	}
	var dead []uint64
	var p uint64
	eachRow(t, m, `SELECT position FROM dead_letters ORDER BY position`, func() { dead = append(dead, p) }, &p)
	if !slices.Equal(dead, w.dead) {
		fail("dead letters %v, want %v", dead, w.dead)
	}
	if p, err := m.Position(ctx); err != nil || p != w.position {
		fail("checkpoint %d, %v; want %d", p, err, w.position)
	}
	return ok
}

// pointersToSome returns items with about half of their events replaced by
// pointers to them, which the projection must take as the events.
func pointersToSome(rng *rand.Rand, items []Item) []Item {
	out := slices.Clone(items)
	for i, it := range out {
		if it.Event != nil && rng.IntN(2) == 0 {
			p := reflect.New(reflect.TypeOf(it.Event))
			p.Elem().Set(reflect.ValueOf(it.Event))
			out[i].Event = p.Interface().(order.Event)
		}
	}
	return out
}

// eachRow runs q on the model's writer and calls fn after scanning each of
// its rows into dest; an error fails the test.
func eachRow(t *testing.T, m *ReadModel, q string, fn func(), dest ...any) {
	t.Helper()
	rows, err := m.w.QueryContext(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		fn()
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

// randomBatches cuts items into batches of 1 to max events.
func randomBatches(rng *rand.Rand, items []Item, max int) [][]Item {
	var out [][]Item
	for i := 0; i < len(items); {
		n := 1 + rng.IntN(max)
		out = append(out, items[i:min(i+n, len(items))])
		i += n
	}
	return out
}

// logItems logs a failing log, one event per line.
func logItems(t *testing.T, items []Item) {
	t.Helper()
	for _, it := range items {
		t.Logf("%3d v%d %-4s %-18s err=%v %+v", it.Rec.Position, it.Rec.Version, it.Rec.OrderID, it.Rec.Type, it.Err, it.Event)
	}
}
