package order_test

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/order"
)

// TestDecideTransitions runs every command, with arguments valid for the
// order, against an order in every status.
func TestDecideTransitions(t *testing.T) {
	type S = order.Status
	commands := []struct {
		name  string
		cmd   func(order.State) order.Command
		event string
		// from → to for the statuses that accept the command.
		allowed map[S]S
	}{
		{
			name: "CreateOrder", event: "OrderCreated",
			cmd:     func(order.State) order.Command { return newOrder() },
			allowed: map[S]S{order.StatusUnspecified: order.StatusDraft},
		},
		{
			name: "AddItem", event: "ItemAdded",
			cmd:     func(order.State) order.Command { return order.AddItem{SKU: "SKU-3", Quantity: 1, UnitPrice: 500} },
			allowed: map[S]S{order.StatusDraft: order.StatusDraft},
		},
		{
			name: "RemoveItem", event: "ItemRemoved",
			cmd:     func(order.State) order.Command { return order.RemoveItem{SKU: "SKU-1"} },
			allowed: map[S]S{order.StatusDraft: order.StatusDraft},
		},
		{
			name: "ChangeItemQuantity", event: "ItemQuantityChanged",
			cmd:     func(order.State) order.Command { return order.ChangeItemQuantity{SKU: "SKU-1", Quantity: 7} },
			allowed: map[S]S{order.StatusDraft: order.StatusDraft},
		},
		{
			name: "SetShippingAddress", event: "ShippingAddressSet",
			cmd:     func(order.State) order.Command { return order.SetShippingAddress{Address: otherAddress()} },
			allowed: map[S]S{order.StatusDraft: order.StatusDraft, order.StatusPlaced: order.StatusPlaced},
		},
		{
			name: "PlaceOrder", event: "OrderPlaced",
			cmd:     func(order.State) order.Command { return order.PlaceOrder{} },
			allowed: map[S]S{order.StatusDraft: order.StatusPlaced},
		},
		{
			name: "RecordPayment/authorized", event: "PaymentAuthorized",
			cmd: func(s order.State) order.Command {
				return order.RecordPayment{Authorized: true, PaymentRef: "pay-2", Amount: s.Total}
			},
			allowed: map[S]S{order.StatusPlaced: order.StatusPaid, order.StatusPaymentDeclined: order.StatusPaid},
		},
		{
			name: "RecordPayment/declined", event: "PaymentDeclined",
			cmd: func(order.State) order.Command {
				return order.RecordPayment{PaymentRef: "pay-3", Reason: "card expired"}
			},
			allowed: map[S]S{order.StatusPlaced: order.StatusPaymentDeclined, order.StatusPaymentDeclined: order.StatusPaymentDeclined},
		},
		{
			name: "CancelOrder", event: "OrderCancelled",
			cmd: func(order.State) order.Command { return order.CancelOrder{Reason: "duplicate order"} },
			allowed: map[S]S{
				order.StatusDraft:           order.StatusCancelled,
				order.StatusPlaced:          order.StatusCancelled,
				order.StatusPaymentDeclined: order.StatusCancelled,
				order.StatusPaid:            order.StatusCancelled,
			},
		},
		{
			name: "ShipOrder", event: "OrderShipped",
			cmd:     func(order.State) order.Command { return order.ShipOrder{Carrier: "UPS", TrackingNumber: "1Z999"} },
			allowed: map[S]S{order.StatusPaid: order.StatusShipped},
		},
		{
			name: "ConfirmDelivery", event: "OrderDelivered",
			cmd:     func(order.State) order.Command { return order.ConfirmDelivery{} },
			allowed: map[S]S{order.StatusShipped: order.StatusDelivered},
		},
	}

	for _, c := range commands {
		for _, from := range allStatuses {
			t.Run(c.name+"/"+from.String(), func(t *testing.T) {
				s := stateIn(t, from)
				before := cloneState(s)
				events, err := order.Decide(s, c.cmd(s))
				if !reflect.DeepEqual(s, before) {
					t.Fatalf("Decide modified its state")
				}
				pEvents, pErr := order.Decide(s, pointerTo(c.cmd(s)))
				if !reflect.DeepEqual(pEvents, events) || !sameSentinels(pErr, err) {
					t.Fatalf("pointer command: %v, %v; value command: %v, %v", pEvents, pErr, events, err)
				}

				to, ok := c.allowed[from]
				if !ok {
					var want error
					switch {
					case c.name == "CreateOrder":
						want = order.ErrAlreadyExists
					case from == order.StatusUnspecified:
						want = order.ErrNotFound
					default:
						want = order.ErrFailedPrecondition
					}
					if !isOnly(err, want) {
						t.Fatalf("err = %v, want %v", err, want)
					}
					if events != nil {
						t.Fatalf("events = %v on error, want nil", events)
					}
					return
				}

				if err != nil {
					t.Fatalf("err = %v, want success", err)
				}
				if len(events) != 1 || events[0].EventType() != c.event {
					t.Fatalf("events = %#v, want one %s", events, c.event)
				}
				after := order.Evolve(s, events[0], t0)
				if after.Status != to {
					t.Fatalf("status after %s = %v, want %v", c.event, after.Status, to)
				}
				if after.Version != s.Version+1 {
					t.Fatalf("version = %d, want %d", after.Version, s.Version+1)
				}
			})
		}
	}
}

// TestDecideFieldErrors checks that each malformed field is reported as a
// *FieldError naming that field, and that argument errors win over the
// order's state (here: the order does not exist, or is in the wrong
// status).
func TestDecideFieldErrors(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	withAddr := func(mod func(*order.Address)) *order.Address {
		a := homeAddress()
		mod(&a)
		return &a
	}
	create := func(mod func(*order.CreateOrder)) order.CreateOrder {
		c := newOrder()
		mod(&c)
		return c
	}
	manyLines := func(n int) []order.Line {
		lines := make([]order.Line, n)
		for i := range lines {
			lines[i] = order.Line{SKU: fmt.Sprintf("SKU-%d", i), Quantity: 1, UnitPrice: 1}
		}
		return lines
	}

	tests := []struct {
		name  string
		state order.Status
		cmd   order.Command
		field string
	}{
		{"empty order_id", order.StatusUnspecified, create(func(c *order.CreateOrder) { c.OrderID = "" }), "order_id"},
		{"long order_id", order.StatusUnspecified, create(func(c *order.CreateOrder) { c.OrderID = long(65) }), "order_id"},
		{"order_id with space", order.StatusUnspecified, create(func(c *order.CreateOrder) { c.OrderID = "ord 1" }), "order_id"},
		{"order_id with newline", order.StatusUnspecified, create(func(c *order.CreateOrder) { c.OrderID = "ord\n1" }), "order_id"},
		{"order_id non-ASCII", order.StatusUnspecified, create(func(c *order.CreateOrder) { c.OrderID = "ordé" }), "order_id"},
		{"order_id DEL", order.StatusUnspecified, create(func(c *order.CreateOrder) { c.OrderID = "ord\x7f" }), "order_id"},
		{"create on existing order still validates", order.StatusPaid, create(func(c *order.CreateOrder) { c.OrderID = "" }), "order_id"},
		{"empty customer_id", order.StatusUnspecified, create(func(c *order.CreateOrder) { c.CustomerID = "" }), "customer_id"},
		{"customer_id tab", order.StatusUnspecified, create(func(c *order.CreateOrder) { c.CustomerID = "c\t1" }), "customer_id"},
		{"empty currency", order.StatusUnspecified, create(func(c *order.CreateOrder) { c.Currency = "" }), "currency"},
		{"lower-case currency", order.StatusUnspecified, create(func(c *order.CreateOrder) { c.Currency = "eur" }), "currency"},
		{"short currency", order.StatusUnspecified, create(func(c *order.CreateOrder) { c.Currency = "EU" }), "currency"},
		{"long currency", order.StatusUnspecified, create(func(c *order.CreateOrder) { c.Currency = "EURO" }), "currency"},
		{"digit currency", order.StatusUnspecified, create(func(c *order.CreateOrder) { c.Currency = "E1R" }), "currency"},
		{"too many lines", order.StatusUnspecified, create(func(c *order.CreateOrder) { c.Lines = manyLines(order.MaxLines + 1) }), "lines"},
		{"line sku empty", order.StatusUnspecified, create(func(c *order.CreateOrder) { c.Lines[1].SKU = "" }), "lines[1].sku"},
		{"line duplicate sku", order.StatusUnspecified, create(func(c *order.CreateOrder) { c.Lines[1].SKU = c.Lines[0].SKU }), "lines[1].sku"},
		{"line quantity zero", order.StatusUnspecified, create(func(c *order.CreateOrder) { c.Lines[0].Quantity = 0 }), "lines[0].quantity"},
		{"line quantity negative", order.StatusUnspecified, create(func(c *order.CreateOrder) { c.Lines[0].Quantity = -1 }), "lines[0].quantity"},
		{"line quantity too high", order.StatusUnspecified, create(func(c *order.CreateOrder) { c.Lines[1].Quantity = order.MaxQuantity + 1 }), "lines[1].quantity"},
		{"line price negative", order.StatusUnspecified, create(func(c *order.CreateOrder) { c.Lines[0].UnitPrice = -1 }), "lines[0].unit_price"},
		{"line price too high", order.StatusUnspecified, create(func(c *order.CreateOrder) { c.Lines[1].UnitPrice = order.MaxUnitPrice + 1 }), "lines[1].unit_price"},
		{"address line1 missing", order.StatusUnspecified, create(func(c *order.CreateOrder) {
			c.Shipping = withAddr(func(a *order.Address) { a.Line1 = "" })
		}), "shipping_address.line1"},
		{"address line1 blank", order.StatusUnspecified, create(func(c *order.CreateOrder) {
			c.Shipping = withAddr(func(a *order.Address) { a.Line1 = "   " })
		}), "shipping_address.line1"},
		{"address line1 only a zero-width joiner", order.StatusUnspecified, create(func(c *order.CreateOrder) {
			c.Shipping = withAddr(func(a *order.Address) { a.Line1 = " \u200d\u200c " })
		}), "shipping_address.line1"},
		{"address city only combining marks", order.StatusUnspecified, create(func(c *order.CreateOrder) {
			c.Shipping = withAddr(func(a *order.Address) { a.City = "\u0301\u0308" })
		}), "shipping_address.city"},
		{"address city only a Hangul filler", order.StatusUnspecified, create(func(c *order.CreateOrder) {
			c.Shipping = withAddr(func(a *order.Address) { a.City = "\u3164" })
		}), "shipping_address.city"},
		{"address city missing", order.StatusUnspecified, create(func(c *order.CreateOrder) {
			c.Shipping = withAddr(func(a *order.Address) { a.City = "" })
		}), "shipping_address.city"},
		{"address country missing", order.StatusUnspecified, create(func(c *order.CreateOrder) {
			c.Shipping = withAddr(func(a *order.Address) { a.Country = "" })
		}), "shipping_address.country"},
		{"address country lower-case", order.StatusUnspecified, create(func(c *order.CreateOrder) {
			c.Shipping = withAddr(func(a *order.Address) { a.Country = "gb" })
		}), "shipping_address.country"},
		{"address country alpha-3", order.StatusUnspecified, create(func(c *order.CreateOrder) {
			c.Shipping = withAddr(func(a *order.Address) { a.Country = "GBR" })
		}), "shipping_address.country"},
		{"address name newline", order.StatusUnspecified, create(func(c *order.CreateOrder) {
			c.Shipping = withAddr(func(a *order.Address) { a.Name = "Ada\nLovelace" })
		}), "shipping_address.name"},
		{"address line2 C1 control", order.StatusUnspecified, create(func(c *order.CreateOrder) {
			c.Shipping = withAddr(func(a *order.Address) { a.Line2 = "Flat\u00852" })
		}), "shipping_address.line2"},
		{"address region invalid UTF-8", order.StatusUnspecified, create(func(c *order.CreateOrder) {
			c.Shipping = withAddr(func(a *order.Address) { a.Region = "\xff" })
		}), "shipping_address.region"},
		{"address postal code too long", order.StatusUnspecified, create(func(c *order.CreateOrder) {
			c.Shipping = withAddr(func(a *order.Address) { a.PostalCode = long(order.MaxTextLen + 1) })
		}), "shipping_address.postal_code"},

		{"add sku empty", order.StatusDraft, order.AddItem{Quantity: 1}, "sku"},
		{"add sku too long", order.StatusDraft, order.AddItem{SKU: long(65), Quantity: 1}, "sku"},
		{"add quantity zero", order.StatusDraft, order.AddItem{SKU: "S", Quantity: 0}, "quantity"},
		{"add quantity too high", order.StatusDraft, order.AddItem{SKU: "S", Quantity: order.MaxQuantity + 1}, "quantity"},
		{"add price negative", order.StatusDraft, order.AddItem{SKU: "S", Quantity: 1, UnitPrice: -5}, "unit_price"},
		{"add price too high", order.StatusDraft, order.AddItem{SKU: "S", Quantity: 1, UnitPrice: order.MaxUnitPrice + 1}, "unit_price"},
		{"add invalid on missing order", order.StatusUnspecified, order.AddItem{SKU: "S", Quantity: 0}, "quantity"},
		{"add invalid on placed order", order.StatusPlaced, order.AddItem{SKU: "S", Quantity: 0}, "quantity"},
		{"remove sku empty", order.StatusDraft, order.RemoveItem{}, "sku"},
		{"remove sku with space", order.StatusDraft, order.RemoveItem{SKU: "SKU 1"}, "sku"},
		{"change sku empty", order.StatusDraft, order.ChangeItemQuantity{Quantity: 3}, "sku"},
		{"change quantity zero", order.StatusDraft, order.ChangeItemQuantity{SKU: "SKU-1", Quantity: 0}, "quantity"},
		{"change quantity too high", order.StatusDraft, order.ChangeItemQuantity{SKU: "SKU-1", Quantity: order.MaxQuantity + 1}, "quantity"},
		{"set address country", order.StatusDraft, order.SetShippingAddress{Address: order.Address{Line1: "x", City: "y", Country: "D"}}, "shipping_address.country"},
		{"set address empty", order.StatusPlaced, order.SetShippingAddress{}, "shipping_address.line1"},
		{"set address invalid on missing order", order.StatusUnspecified, order.SetShippingAddress{}, "shipping_address.line1"},

		{"payment ref missing", order.StatusPlaced, order.RecordPayment{Authorized: true, Amount: 3499}, "payment_ref"},
		{"payment ref with space", order.StatusPlaced, order.RecordPayment{Authorized: true, PaymentRef: "p 1", Amount: 3499}, "payment_ref"},
		{"payment amount negative", order.StatusPlaced, order.RecordPayment{Authorized: true, PaymentRef: "p", Amount: -1}, "amount"},
		{"payment amount differs", order.StatusPlaced, order.RecordPayment{Authorized: true, PaymentRef: "p", Amount: 3498}, "amount"},
		{"payment amount differs after decline", order.StatusPaymentDeclined, order.RecordPayment{Authorized: true, PaymentRef: "p", Amount: 1}, "amount"},
		{"payment currency differs", order.StatusPlaced, order.RecordPayment{Authorized: true, PaymentRef: "p", Amount: 3499, Currency: "USD"}, "currency"},
		{"payment currency malformed", order.StatusPlaced, order.RecordPayment{Authorized: true, PaymentRef: "p", Amount: 3499, Currency: "eur"}, "currency"},
		{"payment invalid on missing order", order.StatusUnspecified, order.RecordPayment{Authorized: true}, "payment_ref"},
		{"declined ref malformed", order.StatusPlaced, order.RecordPayment{PaymentRef: "p\x00"}, "payment_ref"},
		{"declined reason control", order.StatusPlaced, order.RecordPayment{Reason: "no\rfunds"}, "reason"},
		{"declined reason too long", order.StatusPlaced, order.RecordPayment{Reason: long(order.MaxTextLen + 1)}, "reason"},

		{"cancel reason too long", order.StatusDraft, order.CancelOrder{Reason: long(order.MaxTextLen + 1)}, "reason"},
		{"cancel reason invalid on delivered order", order.StatusDelivered, order.CancelOrder{Reason: "\x1b[31m"}, "reason"},
		{"ship carrier control", order.StatusPaid, order.ShipOrder{Carrier: "DHL\x00"}, "carrier"},
		{"ship tracking too long", order.StatusPaid, order.ShipOrder{TrackingNumber: long(order.MaxTextLen + 1)}, "tracking_number"},
		{"ship tracking invalid UTF-8", order.StatusPaid, order.ShipOrder{TrackingNumber: "\xc3"}, "tracking_number"},
		{"address name bidi override", order.StatusUnspecified, create(func(c *order.CreateOrder) {
			c.Shipping = withAddr(func(a *order.Address) { a.Name = "Ada \u202egpj.exe" })
		}), "shipping_address.name"},
		{"address line1 line separator", order.StatusUnspecified, create(func(c *order.CreateOrder) {
			c.Shipping = withAddr(func(a *order.Address) { a.Line1 = "1 Way\u2028Paid: yes" })
		}), "shipping_address.line1"},
		{"address city paragraph separator", order.StatusDraft, order.SetShippingAddress{Address: order.Address{Line1: "x", City: "Oslo\u2029", Country: "NO"}}, "shipping_address.city"},
		{"address line2 zero-width space", order.StatusUnspecified, create(func(c *order.CreateOrder) {
			c.Shipping = withAddr(func(a *order.Address) { a.Line2 = "Flat\u200b2" })
		}), "shipping_address.line2"},
		{"address region bidi isolate", order.StatusUnspecified, create(func(c *order.CreateOrder) {
			c.Shipping = withAddr(func(a *order.Address) { a.Region = "\u2066North" })
		}), "shipping_address.region"},
		{"address postal code BOM", order.StatusUnspecified, create(func(c *order.CreateOrder) {
			c.Shipping = withAddr(func(a *order.Address) { a.PostalCode = "\ufeff0150" })
		}), "shipping_address.postal_code"},
		{"ship carrier bidi override", order.StatusPaid, order.ShipOrder{Carrier: "\u202eLHD"}, "carrier"},
		{"ship tracking soft hyphen", order.StatusPaid, order.ShipOrder{TrackingNumber: "JD\u00ad0001"}, "tracking_number"},
		{"cancel reason line separator", order.StatusDraft, order.CancelOrder{Reason: "changed mind\u2028refund approved"}, "reason"},
		{"declined reason bidi embedding", order.StatusPlaced, order.RecordPayment{Reason: "\u202bno funds"}, "reason"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events, err := order.Decide(stateIn(t, tt.state), tt.cmd)
			if events != nil {
				t.Errorf("events = %v on error, want nil", events)
			}
			if !isOnly(err, order.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid only", err)
			}
			var fe *order.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v (%T), want *FieldError", err, err)
			}
			if fe.Field != tt.field {
				t.Errorf("Field = %q, want %q (reason %q)", fe.Field, tt.field, fe.Reason)
			}
			if fe.Reason == "" {
				t.Errorf("empty Reason")
			}
		})
	}
}

// TestDecideAcceptsLimits checks the inclusive ends of every limit.
func TestDecideAcceptsLimits(t *testing.T) {
	maxID := strings.Repeat("~", order.MaxIDLen)
	maxText := strings.Repeat("ü", order.MaxTextLen) // 2 bytes per character: the limit counts characters
	lines := make([]order.Line, order.MaxLines)
	for i := range lines {
		lines[i] = order.Line{SKU: fmt.Sprintf("%s%03d", maxID[:order.MaxIDLen-3], i), Quantity: order.MaxQuantity, UnitPrice: order.MaxUnitPrice}
	}
	addr := order.Address{Name: maxText, Line1: maxText, Line2: maxText, City: maxText, Region: maxText, PostalCode: maxText, Country: "ZZ"}
	s := apply(t, order.State{}, order.CreateOrder{OrderID: maxID, CustomerID: "!", Currency: "XTS", Lines: lines, Shipping: &addr})
	const wantTotal = order.MaxLines * order.MaxQuantity * order.MaxUnitPrice // 10^18: fits int64
	if s.Total != wantTotal || len(s.Lines) != order.MaxLines {
		t.Fatalf("Total = %d with %d lines, want %d with %d", s.Total, len(s.Lines), int64(wantTotal), order.MaxLines)
	}
	s = apply(t, s, order.ChangeItemQuantity{SKU: lines[5].SKU, Quantity: 1})
	s = apply(t, s, order.ChangeItemQuantity{SKU: lines[5].SKU, Quantity: order.MaxQuantity})
	s = apply(t, s, order.PlaceOrder{})
	s = apply(t, s, order.RecordPayment{Authorized: true, PaymentRef: maxID, Amount: wantTotal, Currency: "XTS"})
	s = apply(t, s, order.ShipOrder{Carrier: maxText, TrackingNumber: maxText})
	if s.Status != order.StatusShipped {
		t.Fatalf("status = %v", s.Status)
	}

	free := apply(t, order.State{}, order.CreateOrder{OrderID: "o", CustomerID: "c", Currency: "EUR",
		Lines: []order.Line{{SKU: "gift", Quantity: 1, UnitPrice: 0}}})
	free = apply(t, free, order.SetShippingAddress{Address: otherAddress()})
	free = apply(t, free, order.PlaceOrder{})
	free = apply(t, free, order.RecordPayment{Authorized: true, PaymentRef: "zero", Amount: 0})
	if free.Status != order.StatusPaid || free.Total != 0 {
		t.Fatalf("free order: status %v total %d", free.Status, free.Total)
	}
}

func TestAddItemRules(t *testing.T) {
	draft := stateIn(t, order.StatusDraft)

	_, err := order.Decide(draft, order.AddItem{SKU: "SKU-1", Quantity: 1, UnitPrice: 1})
	if !isOnly(err, order.ErrAlreadyExists) {
		t.Errorf("AddItem of present SKU: err = %v, want ErrAlreadyExists", err)
	}

	full := apply(t, order.State{}, order.CreateOrder{OrderID: "o", CustomerID: "c", Currency: "EUR"})
	for i := range order.MaxLines {
		full = apply(t, full, order.AddItem{SKU: fmt.Sprintf("S%02d", i), Quantity: 1, UnitPrice: 1})
	}
	_, err = order.Decide(full, order.AddItem{SKU: "one-too-many", Quantity: 1, UnitPrice: 1})
	if !isOnly(err, order.ErrFailedPrecondition) {
		t.Errorf("AddItem beyond MaxLines: err = %v, want ErrFailedPrecondition", err)
	}
	// Freeing a line makes room again.
	full = apply(t, full, order.RemoveItem{SKU: "S42"})
	full = apply(t, full, order.AddItem{SKU: "one-too-many", Quantity: 1, UnitPrice: 1})
	if len(full.Lines) != order.MaxLines || full.Total != order.MaxLines {
		t.Errorf("lines = %d, total = %d", len(full.Lines), full.Total)
	}
}

func TestMissingLine(t *testing.T) {
	draft := stateIn(t, order.StatusDraft)
	for _, c := range []order.Command{
		order.RemoveItem{SKU: "nope"},
		order.ChangeItemQuantity{SKU: "nope", Quantity: 1},
	} {
		events, err := order.Decide(draft, c)
		if !isOnly(err, order.ErrNotFound) || events != nil {
			t.Errorf("%T of absent SKU: events %v, err %v, want ErrNotFound", c, events, err)
		}
	}
}

func TestNoOpCommands(t *testing.T) {
	draft := stateIn(t, order.StatusDraft)
	placed := stateIn(t, order.StatusPlaced)
	tests := []struct {
		name  string
		state order.State
		cmd   order.Command
	}{
		{"same quantity", draft, order.ChangeItemQuantity{SKU: "SKU-1", Quantity: 2}},
		{"same address in draft", draft, order.SetShippingAddress{Address: homeAddress()}},
		{"same address when placed", placed, order.SetShippingAddress{Address: homeAddress()}},
	}
	for _, tt := range tests {
		events, err := order.Decide(tt.state, tt.cmd)
		if err != nil || len(events) != 0 {
			t.Errorf("%s: events %v, err %v, want none and nil", tt.name, events, err)
		}
	}
	// A no-op is still subject to the status rule.
	if _, err := order.Decide(stateIn(t, order.StatusPaid), order.SetShippingAddress{Address: homeAddress()}); !isOnly(err, order.ErrFailedPrecondition) {
		t.Errorf("same address on paid order: err = %v, want ErrFailedPrecondition", err)
	}
}

func TestPlaceOrderPrerequisites(t *testing.T) {
	noLines := apply(t, order.State{}, order.CreateOrder{OrderID: "o", CustomerID: "c", Currency: "EUR", Shipping: new(homeAddress())})
	noAddress := apply(t, order.State{}, order.CreateOrder{OrderID: "o", CustomerID: "c", Currency: "EUR", Lines: []order.Line{{SKU: "a", Quantity: 1, UnitPrice: 1}}})
	emptied := apply(t, stateIn(t, order.StatusDraft), order.RemoveItem{SKU: "SKU-1"})
	emptied = apply(t, emptied, order.RemoveItem{SKU: "SKU-2"})
	for name, s := range map[string]order.State{"no lines": noLines, "no address": noAddress, "all lines removed": emptied} {
		events, err := order.Decide(s, order.PlaceOrder{})
		if !isOnly(err, order.ErrFailedPrecondition) || events != nil {
			t.Errorf("%s: events %v, err %v, want ErrFailedPrecondition", name, events, err)
		}
	}

	s := stateIn(t, order.StatusDraft)
	events, err := order.Decide(s, order.PlaceOrder{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (order.OrderPlaced{Subtotal: 2*1250 + 999, Total: 2*1250 + 999}); !reflect.DeepEqual(events, []order.Event{want}) {
		t.Errorf("events = %#v, want %#v", events, want)
	}
}

// TestPlaceOrderTax checks that tax is bounded, recorded beside the lines'
// subtotal, and charged: a payment must cover lines and tax.
func TestPlaceOrderTax(t *testing.T) {
	s := stateIn(t, order.StatusDraft)
	for _, tax := range []int64{-1, order.MaxTax + 1} {
		if events, err := order.Decide(s, order.PlaceOrder{Tax: tax}); !isOnly(err, order.ErrInvalid) || events != nil {
			t.Errorf("tax %d: events %v, err %v, want ErrInvalid", tax, events, err)
		}
	}
	events, err := order.Decide(s, order.PlaceOrder{Tax: 700})
	if err != nil {
		t.Fatal(err)
	}
	sub := int64(2*1250 + 999)
	if want := (order.OrderPlaced{Subtotal: sub, Tax: 700, Total: sub + 700}); !reflect.DeepEqual(events, []order.Event{want}) {
		t.Fatalf("events = %#v, want %#v", events, want)
	}
	placed := order.Evolve(s, events[0], time.Time{})
	if placed.Total != sub || placed.Tax != 700 || placed.GrandTotal() != sub+700 {
		t.Errorf("placed: total %d tax %d grand total %d", placed.Total, placed.Tax, placed.GrandTotal())
	}
	if _, err := order.Decide(placed, order.RecordPayment{Authorized: true, PaymentRef: "p", Amount: sub}); !isOnly(err, order.ErrInvalid) {
		t.Errorf("payment of the lines only: err %v, want ErrInvalid", err)
	}
	if _, err := order.Decide(placed, order.RecordPayment{Authorized: true, PaymentRef: "p", Amount: sub + 700}); err != nil {
		t.Errorf("payment of lines and tax: %v", err)
	}
}

func TestRecordPayment(t *testing.T) {
	placed := stateIn(t, order.StatusPlaced)

	declined := apply(t, placed, order.RecordPayment{Reason: "do not honor"})
	if declined.Status != order.StatusPaymentDeclined || declined.DeclineReason != "do not honor" || declined.PaymentRef != "" {
		t.Errorf("after anonymous decline: %+v", declined)
	}
	// A field the outcome ignores is still checked: a malformed one is
	// a client's mistake, told rather than dropped.
	for _, bad := range []order.RecordPayment{
		{PaymentRef: "pay-9", Reason: "card expired", Amount: -7},
		{PaymentRef: "pay-9", Reason: "card expired", Currency: "bogus"},
		{Authorized: true, PaymentRef: "pay-9", Amount: placed.Total, Reason: "line\u2028break"},
	} {
		if _, err := order.Decide(declined, bad); !isOnly(err, order.ErrInvalid) {
			t.Errorf("%+v: err %v, want ErrInvalid", bad, err)
		}
	}
	declined = apply(t, declined, order.RecordPayment{PaymentRef: "pay-9", Reason: "card expired", Amount: 7, Currency: "USD"})
	if declined.PaymentRef != "pay-9" || declined.DeclineReason != "card expired" {
		t.Errorf("after second decline: ref %q reason %q", declined.PaymentRef, declined.DeclineReason)
	}

	paid := apply(t, declined, order.RecordPayment{Authorized: true, PaymentRef: "pay-10", Amount: placed.Total, Currency: "EUR", Reason: "ignored"})
	if paid.Status != order.StatusPaid || paid.PaymentRef != "pay-10" || paid.DeclineReason != "" || !paid.PaidAt.Equal(paid.UpdatedAt) {
		t.Errorf("after authorization: %+v", paid)
	}

	_, err := order.Decide(paid, order.RecordPayment{Authorized: true, PaymentRef: "pay-10", Amount: placed.Total})
	if !isOnly(err, order.ErrFailedPrecondition) {
		t.Errorf("second authorization: err = %v, want ErrFailedPrecondition", err)
	}
}

func TestRefundAfterCancellingPaidOrder(t *testing.T) {
	paid := stateIn(t, order.StatusPaid)
	ev, err := order.Decide(paid, order.CancelOrder{Reason: "changed mind"})
	if err != nil {
		t.Fatal(err)
	}
	cancelled := order.Evolve(paid, ev[0], time.Now())
	if !cancelled.RefundDue() || cancelled.PaidAmount != paid.Total {
		t.Fatalf("cancelled paid order: refund due %v, paid %d", cancelled.RefundDue(), cancelled.PaidAmount)
	}
	if _, err := order.Decide(cancelled, order.RecordRefund{RefundRef: "rf-1", Amount: 1}); !isOnly(err, order.ErrInvalid) {
		t.Fatalf("partial refund: %v, want ErrInvalid", err)
	}
	if _, err := order.Decide(cancelled, order.RecordRefund{Amount: paid.Total}); !isOnly(err, order.ErrInvalid) {
		t.Fatalf("refund without ref: %v, want ErrInvalid", err)
	}
	ev, err = order.Decide(cancelled, order.RecordRefund{RefundRef: "rf-1", Amount: paid.Total})
	if err != nil {
		t.Fatal(err)
	}
	ri, ok := ev[0].(order.RefundIssued)
	if !ok || ri.Amount != paid.Total || ri.PaymentRef != paid.PaymentRef {
		t.Fatalf("event %#v", ev[0])
	}
	refunded := order.Evolve(cancelled, ri, time.Now())
	if refunded.RefundDue() || refunded.RefundRef != "rf-1" || refunded.RefundedAt.IsZero() || refunded.Status != order.StatusCancelled {
		t.Fatalf("refunded state %+v", refunded)
	}
	if _, err := order.Decide(refunded, order.RecordRefund{RefundRef: "rf-2", Amount: paid.Total}); !isOnly(err, order.ErrFailedPrecondition) {
		t.Fatalf("second refund: %v, want ErrFailedPrecondition", err)
	}
	for _, st := range []order.Status{order.StatusDraft, order.StatusPlaced, order.StatusPaid, order.StatusShipped, order.StatusDelivered} {
		if _, err := order.Decide(stateIn(t, st), order.RecordRefund{RefundRef: "rf", Amount: 1}); !isOnly(err, order.ErrFailedPrecondition) {
			t.Fatalf("refund in %v: %v", st, err)
		}
	}
	unpaid := order.Evolve(stateIn(t, order.StatusPlaced), order.OrderCancelled{}, time.Now())
	if unpaid.RefundDue() {
		t.Fatal("an unpaid cancelled order has a refund due")
	}
	if _, err := order.Decide(order.State{}, order.RecordRefund{RefundRef: "rf", Amount: 1}); !isOnly(err, order.ErrNotFound) {
		t.Fatalf("refund of unknown order: %v", err)
	}
}

func TestTransitionErrorNamesStatus(t *testing.T) {
	_, err := order.Decide(stateIn(t, order.StatusPlaced), order.AddItem{SKU: "x", Quantity: 1})
	if !errors.Is(err, order.ErrFailedPrecondition) {
		t.Fatalf("AddItem to a placed order: %v, want ErrFailedPrecondition", err)
	}
	if want := "cannot add items to a placed order"; !strings.Contains(err.Error(), want) {
		t.Errorf("message %q, want it to contain %q", err, want)
	}
}

func TestDecideDoesNotAliasCommand(t *testing.T) {
	c := newOrder()
	events, err := order.Decide(order.State{}, c)
	if err != nil {
		t.Fatal(err)
	}
	c.Lines[0].Quantity = 99
	c.Shipping.City = "Paris"
	e := events[0].(order.OrderCreated)
	if e.Lines[0].Quantity != 2 || e.Shipping.City != "London" {
		t.Errorf("event changed with its command: %+v %+v", e.Lines, *e.Shipping)
	}
}

func TestDecideCommandForms(t *testing.T) {
	draft := stateIn(t, order.StatusDraft)

	events, err := order.Decide(draft, &order.AddItem{SKU: "SKU-3", Quantity: 1, UnitPrice: 1})
	if err != nil || len(events) != 1 {
		t.Fatalf("pointer command: events %v, err %v", events, err)
	}
	if _, ok := events[0].(order.ItemAdded); !ok {
		t.Errorf("event is %T, want the value type order.ItemAdded", events[0])
	}

	for name, c := range map[string]order.Command{
		"nil":         nil,
		"nil pointer": (*order.PlaceOrder)(nil),
		"foreign":     foreignCommand{},
	} {
		events, err := order.Decide(draft, c)
		if !isOnly(err, order.ErrInvalid) || events != nil {
			t.Errorf("%s command: events %v, err %v, want ErrInvalid", name, events, err)
		}
	}
}

// foreignCommand satisfies Command only by embedding it.
type foreignCommand struct{ order.Command }

func TestFieldError(t *testing.T) {
	var err error = &order.FieldError{Field: "quantity", Reason: "must be between 1 and 10000"}
	if got, want := err.Error(), "order: invalid command: quantity: must be between 1 and 10000"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, order.ErrInvalid) {
		t.Errorf("FieldError does not match ErrInvalid")
	}
}

func TestMoneyOverflowGuards(t *testing.T) {
	const maxI, minI = math.MaxInt64, math.MinInt64
	mul := []struct {
		q, p, want int64
		ok         bool
	}{
		{order.MaxQuantity, order.MaxUnitPrice, 10_000_000_000_000_000, true},
		{0, maxI, 0, true},
		{maxI, 0, 0, true},
		{maxI, 1, maxI, true},
		{maxI, 2, 0, false},
		{1 << 32, 1 << 31, 0, false},
		{-1, minI, 0, false},
		{minI, -1, 0, false},
		{-1, maxI, -maxI, true},
	}
	for _, tt := range mul {
		got, ok := order.LineTotal(tt.q, tt.p)
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("LineTotal(%d, %d) = %d, %v; want %d, %v", tt.q, tt.p, got, ok, tt.want, tt.ok)
		}
	}
	add := []struct {
		a, b, want int64
		ok         bool
	}{
		{maxI - 1, 1, maxI, true},
		{maxI, 1, 0, false},
		{minI, -1, 0, false},
		{minI, maxI, -1, true},
		{-5, 3, -2, true},
	}
	for _, tt := range add {
		got, ok := order.AddMoney(tt.a, tt.b)
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("AddMoney(%d, %d) = %d, %v; want %d, %v", tt.a, tt.b, got, ok, tt.want, tt.ok)
		}
	}
}

// TestHistoryIsBounded edits a draft until its history holds MaxChanges
// events: the repeatable commands are then refused, a no-op still is one,
// and the order can still be placed, paid or declined no more, cancelled,
// shipped and delivered.
func TestHistoryIsBounded(t *testing.T) {
	s := apply(t, order.State{}, newOrder())
	for i := 0; s.Version < order.MaxChanges; i++ {
		s = apply(t, s, order.ChangeItemQuantity{SKU: "SKU-1", Quantity: int64(1 + i%2)})
	}
	if s.Version != order.MaxChanges {
		t.Fatalf("version %d; want %d", s.Version, order.MaxChanges)
	}
	refused := func(s order.State, c order.Command) {
		t.Helper()
		if evs, err := order.Decide(s, c); !errors.Is(err, order.ErrFailedPrecondition) {
			t.Errorf("%T at %d events = %v, %v; want ErrFailedPrecondition", c, s.Version, evs, err)
		}
	}
	refused(s, order.AddItem{SKU: "SKU-3", Quantity: 1, UnitPrice: 1})
	refused(s, order.RemoveItem{SKU: "SKU-2"})
	refused(s, order.ChangeItemQuantity{SKU: "SKU-2", Quantity: 3})
	refused(s, order.SetShippingAddress{Address: otherAddress()})
	// Malformed is still INVALID_ARGUMENT, and a no-op still changes nothing.
	if _, err := order.Decide(s, order.AddItem{SKU: "", Quantity: 1}); !errors.Is(err, order.ErrInvalid) {
		t.Errorf("a malformed AddItem on a full order = %v; want ErrInvalid", err)
	}
	if evs, err := order.Decide(s, order.SetShippingAddress{Address: homeAddress()}); err != nil || len(evs) != 0 {
		t.Errorf("the current address again = %v, %v; want no events", evs, err)
	}

	placed := apply(t, s, order.PlaceOrder{})
	refused(placed, order.SetShippingAddress{Address: otherAddress()})
	// The first decline moves the order on: it is recorded; another is not.
	declined := apply(t, placed, order.RecordPayment{Authorized: false, Reason: "declined"})
	refused(declined, order.RecordPayment{Authorized: false, Reason: "declined again"})
	paid := apply(t, declined, order.RecordPayment{Authorized: true, PaymentRef: "pay-1", Amount: placed.GrandTotal()})
	delivered := apply(t, apply(t, paid, order.ShipOrder{}), order.ConfirmDelivery{})
	cancelled := apply(t, paid, order.CancelOrder{})
	refunded := apply(t, cancelled, order.RecordRefund{RefundRef: "ref-1", Amount: paid.PaidAmount})
	// Place, decline, pay and two more: within the documented bound of
	// MaxChanges + 6.
	for _, end := range []order.State{delivered, refunded} {
		if end.Version != order.MaxChanges+5 {
			t.Errorf("a history of %d events; want %d", end.Version, order.MaxChanges+5)
		}
	}
}
