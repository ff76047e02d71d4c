package command_test

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/orderstream/orderstream/api/convert"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/order"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Contention level under which a command without expected_revision must not
// end ABORTED: this many concurrent writers on one order. The service
// retries conflicts with a jittered backoff (command.DefaultMaxAttempts
// attempts), which resolves it.
const writersPerOrder = 8

// storedState folds an order's stored events and returns the state and the
// position of each request id's last event.
func storedState(t *testing.T, e *env, id string) (order.State, map[string]uint64) {
	t.Helper()
	recs, err := e.store.Load(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	var st order.State
	at := map[string]uint64{}
	for _, r := range recs {
		ev, err := convert.DecodeEvent(r.Type, r.Data)
		if err != nil {
			t.Fatal(err)
		}
		st = order.Evolve(st, ev, r.Meta.OccurredAt)
		at[r.Meta.RequestID] = r.Position
	}
	return st, at
}

func lineMap(lines []order.Line) map[string]int64 {
	m := map[string]int64{}
	for _, l := range lines {
		m[l.SKU] = l.Quantity
	}
	return m
}

// Concurrent AddItems without expected revision on one order all succeed
// (the conflicts between them are retried, not answered ABORTED) and every
// one of them is in the order: exactly these lines, these quantities.
func TestConcurrentCommandsLoseNoUpdate(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	res, err := e.client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "c", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	id := res.GetOrder().GetOrderId()
	var wg sync.WaitGroup
	errs := make([]error, writersPerOrder)
	want := map[string]int64{}
	for i := range writersPerOrder {
		sku := fmt.Sprintf("SKU-%02d", i)
		want[sku] = int64(i + 1)
		wg.Go(func() {
			_, errs[i] = e.client.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: id, Sku: sku, Quantity: int64(i + 1), UnitPrice: 10})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("AddItem SKU-%02d without expected revision: %v (%d concurrent writers must not exhaust the retries)", i, err, writersPerOrder)
		}
	}
	st, _ := storedState(t, e, id)
	if got := lineMap(st.Lines); !maps.Equal(got, want) {
		t.Fatalf("stored lines %v, want %v", got, want)
	}
	if st.Total != 10*int64(writersPerOrder*(writersPerOrder+1)/2) || st.Version != writersPerOrder+1 {
		t.Fatalf("total %d version %d", st.Total, st.Version)
	}
	t.Logf("%d conflicts retried", e.svc.ConflictRetries())
}

type opKind int

const (
	opAdd opKind = iota
	opChange
	opRemove
	opPlace
	opCancel
)

type op struct {
	kind     opKind
	order    string
	rid, sku string
	qty      int64
	expected bool // sent with an expected revision
	code     codes.Code
	position uint64
}

// Many clients hammering few orders with a mix of commands. Commands
// without expected_revision are retried on conflict and never answered
// ABORTED at this contention level; commands with one may be ABORTED and
// then leave nothing in the log. Each order's stored history holds exactly
// the acknowledged commands, at the positions they were acknowledged with,
// and its state (which lines, which quantities, which status) is their
// serial application in log order.
func TestManyClientsFewOrders(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	const orders, perClient = 3, 10
	const clients = orders * writersPerOrder
	ids := make([]string, orders)
	created := make([]uint64, orders)    // revisions
	createdPos := make([]uint64, orders) // log positions
	for i := range ids {
		c, err := e.client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "hammer", Currency: "EUR",
			Lines: []*ordersv1.LineItem{{Sku: "BASE", Quantity: 1, UnitPrice: 100}}, ShippingAddress: address()})
		if err != nil {
			t.Fatal(err)
		}
		ids[i], created[i], createdPos[i] = c.GetOrder().GetOrderId(), c.GetRevision(), c.GetPosition()
	}

	var mu sync.Mutex
	var ops []op
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			own := map[string][]string{} // order → this client's lines in it
			seen := map[string]uint64{}  // order → last revision this client saw
			for i, id := range ids {
				seen[id] = created[i]
			}
			for n := range perClient {
				o := op{order: ids[(c+n)%orders], rid: rid(), qty: int64(n + 1)}
				// Every fourth client states the revision it last saw.
				o.expected = c%4 == 3
				var rev *uint64
				if o.expected {
					v := seen[o.order]
					rev = &v
				}
				skus := own[o.order]
				switch {
				case n == perClient-1 && c < orders:
					o.kind, o.order = opPlace, ids[c]
				case n == perClient-1 && c < 2*orders && c%2 == 0:
					o.kind, o.order = opCancel, ids[c-orders]
				case n%3 == 1 && len(skus) > 0:
					o.kind, o.sku, o.qty = opChange, skus[len(skus)-1], int64(100+n)
				case n%3 == 2 && len(skus) > 0:
					o.kind, o.sku = opRemove, skus[0]
				default:
					o.kind, o.sku = opAdd, fmt.Sprintf("C%02d-N%02d", c, n)
				}
				var r interface {
					GetPosition() uint64
					GetRevision() uint64
				}
				var err error
				switch o.kind {
				case opAdd:
					r, err = e.client.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: o.rid, OrderId: o.order, Sku: o.sku, Quantity: o.qty, UnitPrice: 10, ExpectedRevision: rev})
				case opChange:
					r, err = e.client.ChangeItemQuantity(ctx, &ordersv1.ChangeItemQuantityRequest{RequestId: o.rid, OrderId: o.order, Sku: o.sku, Quantity: o.qty, ExpectedRevision: rev})
				case opRemove:
					r, err = e.client.RemoveItem(ctx, &ordersv1.RemoveItemRequest{RequestId: o.rid, OrderId: o.order, Sku: o.sku, ExpectedRevision: rev})
				case opPlace:
					r, err = e.client.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: o.rid, OrderId: o.order, ExpectedRevision: rev})
				case opCancel:
					r, err = e.client.CancelOrder(ctx, &ordersv1.CancelOrderRequest{RequestId: o.rid, OrderId: o.order, Reason: "hammer", ExpectedRevision: rev})
				}
				o.code = status.Code(err)
				if err == nil {
					o.position = r.GetPosition()
					seen[o.order] = r.GetRevision()
					switch o.kind {
					case opAdd:
						own[o.order] = append(own[o.order], o.sku)
					case opRemove:
						own[o.order] = slices.DeleteFunc(own[o.order], func(s string) bool { return s == o.sku })
					}
				}
				mu.Lock()
				ops = append(ops, o)
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	var acked []op
	abortedWith, abortedWithout, rejected := 0, 0, 0
	rejectedOn := map[string]int{}
	for _, o := range ops {
		switch {
		case o.code == codes.OK:
			acked = append(acked, o)
		case o.code == codes.Aborted && o.expected:
			abortedWith++ // legitimate: the client asked to fail on a stale revision
		case o.code == codes.Aborted:
			abortedWithout++
			t.Errorf("%v on %s without expected revision: ABORTED at %d writers per order", o.kind, o.order, writersPerOrder)
		case o.code == codes.FailedPrecondition:
			rejected++ // an item change or a status change after the order left draft
			rejectedOn[o.order]++
		default:
			t.Errorf("%v on %s: unexpected %v", o.kind, o.order, o.code)
		}
	}
	if e.svc.ConflictRetries() == 0 {
		t.Fatal("no conflict was retried: the test did not produce contention")
	}
	slices.SortFunc(acked, func(a, b op) int { return cmp.Compare(a.position, b.position) })

	for _, id := range ids {
		// The model: serial application of the acknowledged commands.
		lines := map[string]int64{"BASE": 1}
		status := order.StatusDraft
		ackedAt := map[string]uint64{}
		for _, o := range acked {
			if o.order != id {
				continue
			}
			ackedAt[o.rid] = o.position
			_, has := lines[o.sku]
			switch {
			case o.kind == opPlace && status == order.StatusDraft:
				status = order.StatusPlaced
			case o.kind == opCancel && (status == order.StatusDraft || status == order.StatusPlaced):
				status = order.StatusCancelled
			case status != order.StatusDraft:
				t.Errorf("order %s: %v acknowledged at %d after the order left draft", id, o.kind, o.position)
			case o.kind == opAdd && !has:
				lines[o.sku] = o.qty
			case o.kind == opChange && has:
				lines[o.sku] = o.qty
			case o.kind == opRemove && has:
				delete(lines, o.sku)
			default:
				t.Errorf("order %s: %v of %s acknowledged at %d does not apply in log order", id, o.kind, o.sku, o.position)
			}
		}
		st, storedAt := storedState(t, e, id)
		delete(storedAt, "") // none expected; an event without a request id would show up below
		for r, pos := range storedAt {
			if pos == createdPos[slices.Index(ids, id)] {
				delete(storedAt, r)
			}
		}
		if !maps.Equal(storedAt, ackedAt) {
			t.Errorf("order %s: stored requests (request id → position) %v,\nacknowledged %v", id, storedAt, ackedAt)
		}
		if got := lineMap(st.Lines); !maps.Equal(got, lines) {
			t.Errorf("order %s: stored lines %v, serial application gives %v", id, got, lines)
		}
		if status == order.StatusDraft && rejectedOn[id] > 0 {
			t.Errorf("order %s never left draft, yet %d commands on it were FAILED_PRECONDITION", id, rejectedOn[id])
		}
		if st.Status != status {
			t.Errorf("order %s: stored status %v, serial application gives %v", id, st.Status, status)
		}
	}
	t.Logf("%d commands: %d acknowledged, %d ABORTED with expected revision, %d ABORTED without, %d rejected by the domain; %d conflicts retried",
		len(ops), len(acked), abortedWith, abortedWithout, rejected, e.svc.ConflictRetries())
}

func (k opKind) String() string {
	return [...]string{"AddItem", "ChangeItemQuantity", "RemoveItem", "PlaceOrder", "CancelOrder"}[k]
}
