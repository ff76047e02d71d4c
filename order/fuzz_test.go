package order_test

import (
	"errors"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/orderstream/orderstream/order"
)

// fuzzInput decodes fuzz bytes into commands and events. Byte 0 always
// picks a valid, ordinary value, so zero padding keeps a seed meaningful and
// the fuzzer finds valid paths easily; other values pick edge cases.
type fuzzInput struct{ b []byte }

func (in *fuzzInput) next() byte {
	if len(in.b) == 0 {
		return 0
	}
	c := in.b[0]
	in.b = in.b[1:]
	return c
}

func (in *fuzzInput) raw() string {
	n := min(int(in.next()), len(in.b))
	s := string(in.b[:n])
	in.b = in.b[n:]
	return s
}

func pick[T any](in *fuzzInput, pool []T, rest func(byte) T) T {
	c := in.next()
	if int(c) < len(pool) {
		return pool[c]
	}
	return rest(c)
}

var oddStrings = []string{"", " ", "x y", strings.Repeat("x", order.MaxIDLen+1), "\x00", "é", "a.b*>", "\xff"}

func (in *fuzzInput) id(valid string) string {
	return pick(in, append([]string{valid}, oddStrings...), func(c byte) string {
		if c == 255 {
			return in.raw()
		}
		return valid + "-" + strconv.Itoa(int(c))
	})
}

func (in *fuzzInput) sku() string {
	c := in.next()
	switch {
	case c < 200:
		// 120 distinct valid SKUs: enough to hit MaxLines.
		return "S" + strconv.Itoa(int(c)%120)
	case c == 255:
		return in.raw()
	default:
		return oddStrings[int(c)%len(oddStrings)]
	}
}

func (in *fuzzInput) quantity() int64 {
	return pick(in, []int64{1, 2, 3, order.MaxQuantity, 0, -1, order.MaxQuantity + 1, math.MaxInt64, math.MinInt64},
		func(c byte) int64 { return int64(c) - 100 })
}

func (in *fuzzInput) price() int64 {
	return pick(in, []int64{100, 0, 1, order.MaxUnitPrice, order.MaxUnitPrice + 1, -1, math.MaxInt64, math.MinInt64},
		func(c byte) int64 { return int64(c) * 1000 })
}

func (in *fuzzInput) text() string {
	return pick(in, []string{"", "ok text", strings.Repeat("ü", order.MaxTextLen), strings.Repeat("x", order.MaxTextLen+1), "a\nb", "\xff", "   ", "\u0085"},
		func(c byte) string {
			if c == 255 {
				return in.raw()
			}
			return "text " + strconv.Itoa(int(c))
		})
}

func (in *fuzzInput) address() order.Address {
	a := pick(in, []order.Address{homeAddress(), otherAddress(), {}}, func(byte) order.Address {
		return order.Address{Name: in.text(), Line1: in.text(), Line2: in.text(), City: in.text(), Region: in.text(), PostalCode: in.text(), Country: in.id("DE")}
	})
	return a
}

func (in *fuzzInput) line() order.Line {
	return order.Line{SKU: in.sku(), Quantity: in.quantity(), UnitPrice: in.price()}
}

// command decodes one command; s supplies plausible amounts.
func (in *fuzzInput) command(s order.State) (order.Command, string) {
	switch in.next() % 12 {
	case 0:
		c := order.CreateOrder{
			OrderID:    in.id("ord-1"),
			CustomerID: in.id("cust-1"),
			Currency:   pick(in, []string{"EUR", "JPY", "", "eur", "US", "USDX", "€UR"}, func(c byte) string { return in.raw() }),
		}
		n := int(in.next()) % (order.MaxLines + 12)
		for range n {
			c.Lines = append(c.Lines, in.line())
		}
		switch in.next() % 3 {
		case 0:
			a := in.address()
			c.Shipping = &a
		case 1:
			c.Shipping = new(homeAddress())
		}
		return c, "OrderCreated"
	case 1:
		l := in.line()
		return order.AddItem{SKU: l.SKU, Quantity: l.Quantity, UnitPrice: l.UnitPrice}, "ItemAdded"
	case 2:
		return order.RemoveItem{SKU: in.sku()}, "ItemRemoved"
	case 3:
		return order.ChangeItemQuantity{SKU: in.sku(), Quantity: in.quantity()}, "ItemQuantityChanged"
	case 4:
		return order.SetShippingAddress{Address: in.address()}, "ShippingAddressSet"
	case 5:
		tax := pick(in, []int64{0, 0, 1, 250, -1, order.MaxTax, order.MaxTax + 1, math.MaxInt64}, func(c byte) int64 { return int64(c) })
		return order.PlaceOrder{Tax: tax}, "OrderPlaced"
	case 6:
		amount := pick(in, []int64{s.GrandTotal(), s.Total, s.GrandTotal() + 1, -1, 0, math.MaxInt64}, func(c byte) int64 { return int64(c) })
		currency := pick(in, []string{"", s.Currency, "XXX", "bad"}, func(c byte) string { return in.raw() })
		return order.RecordPayment{Authorized: true, PaymentRef: in.id("pay-1"), Amount: amount, Currency: currency, Reason: in.text()}, "PaymentAuthorized"
	case 7:
		return order.RecordPayment{PaymentRef: pick(in, []string{"", "pay-d"}, func(byte) string { return in.id("pay-x") }), Reason: in.text(), Amount: int64(in.next()) - 128}, "PaymentDeclined"
	case 8:
		return order.CancelOrder{Reason: in.text()}, "OrderCancelled"
	case 9:
		return order.ShipOrder{Carrier: in.text(), TrackingNumber: in.text()}, "OrderShipped"
	case 10:
		amount := pick(in, []int64{s.PaidAmount, s.PaidAmount - 1, 0, -5}, func(c byte) int64 { return int64(c) })
		return order.RecordRefund{RefundRef: in.id("rf-1"), Amount: amount}, "RefundIssued"
	default:
		return order.ConfirmDelivery{}, "OrderDelivered"
	}
}

// lifecycle says, per event type, which statuses may precede it and which
// follows it.
var lifecycle = map[string]struct {
	from []order.Status
	to   order.Status
}{
	"OrderCreated":        {[]order.Status{order.StatusUnspecified}, order.StatusDraft},
	"ItemAdded":           {[]order.Status{order.StatusDraft}, order.StatusDraft},
	"ItemRemoved":         {[]order.Status{order.StatusDraft}, order.StatusDraft},
	"ItemQuantityChanged": {[]order.Status{order.StatusDraft}, order.StatusDraft},
	"ShippingAddressSet":  {[]order.Status{order.StatusDraft, order.StatusPlaced}, 0},
	"OrderPlaced":         {[]order.Status{order.StatusDraft}, order.StatusPlaced},
	"PaymentAuthorized":   {[]order.Status{order.StatusPlaced, order.StatusPaymentDeclined}, order.StatusPaid},
	"PaymentDeclined":     {[]order.Status{order.StatusPlaced, order.StatusPaymentDeclined}, order.StatusPaymentDeclined},
	"OrderCancelled":      {[]order.Status{order.StatusDraft, order.StatusPlaced, order.StatusPaymentDeclined, order.StatusPaid}, order.StatusCancelled},
	"RefundIssued":        {[]order.Status{order.StatusCancelled}, order.StatusCancelled},
	"OrderShipped":        {[]order.Status{order.StatusPaid}, order.StatusShipped},
	"OrderDelivered":      {[]order.Status{order.StatusShipped}, order.StatusDelivered},
}

// checkState asserts the invariants every state reached through Decide
// holds.
func checkState(t *testing.T, s order.State) {
	t.Helper()
	if len(s.Lines) > order.MaxLines {
		t.Fatalf("%d lines", len(s.Lines))
	}
	var sum int64
	seen := map[string]bool{}
	for _, l := range s.Lines {
		if seen[l.SKU] {
			t.Fatalf("duplicate SKU %q in %v", l.SKU, s.Lines)
		}
		seen[l.SKU] = true
		if l.Quantity < 1 || l.Quantity > order.MaxQuantity || l.UnitPrice < 0 || l.UnitPrice > order.MaxUnitPrice {
			t.Fatalf("line out of limits: %+v", l)
		}
		// Within the limits each product is at most 10^16 and the sum of
		// 100 of them at most 10^18, so this cannot overflow.
		sum += l.Quantity * l.UnitPrice
	}
	if s.Total != sum {
		t.Fatalf("Total = %d, sum of lines = %d", s.Total, sum)
	}
	if s.Status < order.StatusUnspecified || s.Status > order.StatusCancelled {
		t.Fatalf("status %d out of range", s.Status)
	}
	if s.Exists() && (s.ID == "" || s.CustomerID == "" || len(s.Currency) != 3) {
		t.Fatalf("existing order without identity: %+v", s)
	}
	switch s.Status {
	case order.StatusPlaced, order.StatusPaid, order.StatusPaymentDeclined, order.StatusShipped, order.StatusDelivered:
		if len(s.Lines) == 0 || s.Shipping == nil {
			t.Fatalf("%v order without lines or address: %+v", s.Status, s)
		}
	}
	switch s.Status {
	case order.StatusPaid, order.StatusShipped, order.StatusDelivered:
		if s.PaymentRef == "" || s.PaidAt.IsZero() {
			t.Fatalf("%v order without payment: %+v", s.Status, s)
		}
	}
}

func addSeeds(f *testing.F) {
	const (
		create, add, remove, change, ship2, place, pay, decline, cancel, ship, deliver = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
	)
	// create(ids, currency, 2 lines, address) → add → change → place →
	// decline → pay → ship → deliver.
	f.Add([]byte{create, 0, 0, 0, 2, 1, 0, 0, 2, 1, 0, 0, 0, add, 3, 0, 0, change, 3, 2, place, decline, 1, 0, 0, pay, 0, 0, 0, 0, ship, 1, 1, deliver})
	f.Add([]byte{create, 0, 0, 0, 0, 0, 0, ship2, 1, place, add, 1, 0, 0, place, cancel, 1, cancel})
	f.Add([]byte{create, 0, 0, 0, 100, 0, 0, 1, pay, 0})                       // 100 lines of the same SKU: rejected
	f.Add([]byte{create, 2, 3, 2, 101, 0})                                     // bad ids, too many lines
	f.Add([]byte{remove, 0, create, 0, 0, 0, 1, 0, 4, 5, 0, remove, 0, place}) // bad line, then remove on empty
	var many []byte
	many = append(many, create, 0, 0, 0, 0, 0, 0)
	for i := range 110 {
		many = append(many, add, byte(i), 3, 3)
	}
	many = append(many, place, pay, 0, 1, 0, 0, ship, 2, 3, deliver, cancel, 0)
	f.Add(many)
	f.Add([]byte{create, 255, 4, 'a', ' ', 'b', 0, 0, 0, 1, 255, 3, 1, 2, 3, 0, ship2, 255, 2, 'x', 'y', 2, 4})
}

// FuzzDecide runs random command sequences through Decide, applies the
// accepted events with Evolve and checks the invariants of the aggregate.
func FuzzDecide(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		in := &fuzzInput{b: data}
		var (
			s      order.State
			events []order.Event
			times  []time.Time
		)
		for step := 0; len(in.b) > 0 && step < 500; step++ {
			cmd, wantType := in.command(s)
			before := cloneState(s)
			got, err := order.Decide(s, cmd)
			if !reflect.DeepEqual(s, before) {
				t.Fatalf("Decide(%#v) modified its state", cmd)
			}
			if err != nil {
				if got != nil {
					t.Fatalf("Decide(%#v) returned events %v with error %v", cmd, got, err)
				}
				if sentinelOf(err) == nil {
					t.Fatalf("Decide(%#v) error %v matches no single sentinel", cmd, err)
				}
				var fe *order.FieldError
				if errors.As(err, &fe) && (!errors.Is(err, order.ErrInvalid) || fe.Field == "" || fe.Reason == "") {
					t.Fatalf("malformed FieldError %#v", fe)
				}
				continue
			}
			if len(got) == 0 {
				switch cmd.(type) {
				case order.ChangeItemQuantity, order.SetShippingAddress:
				default:
					t.Fatalf("Decide(%#v) accepted without events", cmd)
				}
			}
			for _, e := range got {
				if e.EventType() != wantType || !slices.Contains(order.EventTypes, e.EventType()) {
					t.Fatalf("Decide(%#v) gave %s, want %s", cmd, e.EventType(), wantType)
				}
				rule := lifecycle[e.EventType()]
				if !slices.Contains(rule.from, s.Status) {
					t.Fatalf("%s accepted in status %v", e.EventType(), s.Status)
				}
				at := t0.Add(time.Duration(len(events)) * time.Second)
				prev := cloneState(s)
				next := order.Evolve(s, e, at)
				if !reflect.DeepEqual(s, prev) {
					t.Fatalf("Evolve(%#v) modified its state", e)
				}
				want := rule.to
				if want == 0 {
					want = s.Status
				}
				if next.Status != want || next.Version != s.Version+1 || !next.UpdatedAt.Equal(at) {
					t.Fatalf("after %s from %v: status %v version %d, want %v version %d", e.EventType(), s.Status, next.Status, next.Version, want, s.Version+1)
				}
				if placed, ok := e.(order.OrderPlaced); ok && (placed.Subtotal != next.Total || placed.Tax != next.Tax || placed.Total != next.GrandTotal() || placed.Total != placed.Subtotal+placed.Tax) {
					t.Fatalf("%#v: state total %d, tax %d, grand total %d", placed, next.Total, next.Tax, next.GrandTotal())
				}
				if paid, ok := e.(order.PaymentAuthorized); ok && paid.Amount != next.GrandTotal() {
					t.Fatalf("authorized %d, grand total %d", paid.Amount, next.GrandTotal())
				}
				s = next
				events = append(events, e)
				times = append(times, at)
			}
			checkState(t, s)
		}
		if replay := order.Fold(events, times); !reflect.DeepEqual(replay, s) {
			t.Fatalf("Fold of the history differs from the evolved state:\n%+v\n%+v", replay, s)
		}
	})
}

// FuzzEvolve applies arbitrary event sequences, including ones Decide never
// produces: Evolve must not panic, must count every event, keep SKUs unique
// and never change a state it was given.
func FuzzEvolve(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 2, 1, 0, 0, 5, 1, 0, 0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11})
	f.Add([]byte{5, 6, 7, 1, 1, 1, 1, 1, 1, 2, 2, 3, 3, 0, 255, 11, 12})
	f.Add([]byte{1, 200, 6, 6, 1, 200, 7, 7, 3, 200, 8})
	f.Fuzz(func(t *testing.T, data []byte) {
		in := &fuzzInput{b: data}
		var s order.State
		for n := 1; len(in.b) > 0 && n <= 500; n++ {
			var e order.Event
			switch in.next() % 14 {
			case 0:
				c := order.OrderCreated{OrderID: in.id("o"), CustomerID: in.id("c"), Currency: in.id("EUR")}
				for range int(in.next()) % 8 {
					c.Lines = append(c.Lines, in.line())
				}
				if in.next()%2 == 0 {
					c.Shipping = new(in.address())
				}
				e = c
			case 1:
				l := in.line()
				e = order.ItemAdded{SKU: l.SKU, Quantity: l.Quantity, UnitPrice: l.UnitPrice}
			case 2:
				e = order.ItemRemoved{SKU: in.sku()}
			case 3:
				e = order.ItemQuantityChanged{SKU: in.sku(), Quantity: in.quantity()}
			case 4:
				e = order.ShippingAddressSet{Address: in.address()}
			case 5:
				e = order.OrderPlaced{Total: in.price()}
			case 6:
				e = order.PaymentAuthorized{PaymentRef: in.id("p"), Amount: in.price()}
			case 7:
				e = order.PaymentDeclined{PaymentRef: in.id("p"), Reason: in.text()}
			case 8:
				e = order.OrderCancelled{Reason: in.text()}
			case 9:
				e = order.OrderShipped{Carrier: in.text(), TrackingNumber: in.text()}
			case 10:
				e = order.OrderDelivered{}
			case 11:
				e = &order.ItemAdded{SKU: in.sku(), Quantity: 1}
			case 12:
				e = unknownEvent{}
			default:
				e = nil
			}
			prev := cloneState(s)
			next := order.Evolve(s, e, t0)
			if !reflect.DeepEqual(s, prev) {
				t.Fatalf("Evolve(%#v) modified its state", e)
			}
			if next.Version != n {
				t.Fatalf("Version = %d after %d events", next.Version, n)
			}
			seen := map[string]bool{}
			var sum int64
			for _, l := range next.Lines {
				if seen[l.SKU] {
					t.Fatalf("duplicate SKU %q", l.SKU)
				}
				seen[l.SKU] = true
				sum += l.Quantity * l.UnitPrice
			}
			if next.Total != sum {
				t.Fatalf("Total = %d, sum = %d", next.Total, sum)
			}
			if next.Lines != nil && len(next.Lines) == 0 {
				t.Fatalf("empty non-nil Lines")
			}
			s = next
		}
	})
}

// FuzzValidateID checks the identifier rule shared by order ids, SKUs and
// request ids: what it accepts is 1-64 bytes that all print as themselves,
// so no control (C0 or C1), format (zero-width, BOM, bidi), space or
// non-ASCII look-alike character gets through, and neither "." nor "..",
// which a REST path naming the id (an item's SKU) takes for a directory:
// such a line could be added and never changed or removed over REST.
func FuzzValidateID(f *testing.F) {
	for _, s := range []string{
		"order-1", "550e8400-e29b-41d4-a716-446655440000", "~!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}", strings.Repeat("x", 64),
		"", " ", "a b", "\x00", "a\x7f", "a\u0085b", "\u009b", "a\u200bb", "\u200d", "\ufeff", "\u00ad", "\u202e", "\u2028",
		"caf\u00e9", "\u0430", strings.Repeat("x", 65), "\xff", ".", "..", "...", ".a",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		err := order.ValidateID("request_id", v)
		var fe *order.FieldError
		if err != nil && (!errors.As(err, &fe) || fe.Field != "request_id" || !errors.Is(err, order.ErrInvalid)) {
			t.Fatalf("ValidateID(%q) = %v: want a *FieldError for request_id matching ErrInvalid", v, err)
		}
		ok := len(v) >= 1 && len(v) <= order.MaxIDLen
		for i := 0; i < len(v); i++ {
			ok = ok && v[i] > ' ' && v[i] < 0x7f
		}
		ok = ok && v != "." && v != ".."
		if (err == nil) != ok {
			t.Fatalf("ValidateID(%q) = %v, want accepted=%v", v, err, ok)
		}
		if err == nil && strings.ContainsFunc(v, func(r rune) bool {
			return !unicode.IsGraphic(r) || unicode.IsSpace(r) || unicode.Is(unicode.Cf, r)
		}) {
			t.Fatalf("ValidateID accepted %q, which holds a character that does not print", v)
		}
	})
}

// FuzzTextRule checks the free-text rule through Decide: whatever carrier a
// ShipOrder is accepted with holds no character that hides, reorders or
// breaks what a reader sees (control, format other than ZWNJ/ZWJ, line or
// paragraph separator), and text of ordinary letters in any script, with
// the joiners those scripts need, is accepted.
func FuzzTextRule(f *testing.F) {
	for _, s := range []string{
		"DHL", "Zoë", "東京", "می\u200cخواهم", "👩\u200d💻", "Straße 5", "",
		"\u202eLHD", "a\u2028b", "a\u2029b", "a\u200bb", "\u2066x\u2069", "\ufeff", "\u00ad", "a\tb", "\u0085", "\xff",
	} {
		f.Add(s)
	}
	paid := order.State{Status: order.StatusPaid}
	f.Fuzz(func(t *testing.T, v string) {
		_, err := order.Decide(paid, order.ShipOrder{Carrier: v})
		hidden := strings.ContainsFunc(v, func(r rune) bool {
			return unicode.IsControl(r) || unicode.In(r, unicode.Zl, unicode.Zp) || (unicode.Is(unicode.Cf, r) && r != '\u200c' && r != '\u200d')
		})
		if err == nil && hidden {
			t.Fatalf("carrier %q accepted, though it holds a character that hides what is shown", v)
		}
		plain := utf8.ValidString(v) && utf8.RuneCountInString(v) <= order.MaxTextLen && !strings.ContainsFunc(v, func(r rune) bool {
			return !(unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S) || r == ' ' || r == '\u200c' || r == '\u200d')
		})
		if err != nil && plain {
			t.Fatalf("carrier %q refused (%v), though it holds only letters, marks, digits, punctuation, symbols, spaces and joiners", v, err)
		}
	})
}
