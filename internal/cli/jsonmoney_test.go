package cli

import (
	"regexp"
	"slices"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// moneyName matches field names that sound like an amount of money.
var moneyName = regexp.MustCompile(`(?i)(price|total|amount|spend|cost|fee)`)

// withMoney finds amounts by JSON name, so the names must mean money
// wherever the contract uses them, and every amount must be found.
func TestMoneyFieldsAreTheContractsAmounts(t *testing.T) {
	var found []string
	protoregistry.GlobalFiles.RangeFilesByPackage(ordersv1.File_orders_v1_types_proto.Package(), func(f protoreflect.FileDescriptor) bool {
		var walk func(protoreflect.MessageDescriptors)
		walk = func(msgs protoreflect.MessageDescriptors) {
			for i := range msgs.Len() {
				m := msgs.Get(i)
				walk(m.Messages())
				for j := range m.Fields().Len() {
					fd := m.Fields().Get(j)
					name := string(fd.Name())
					isMoneyName := moneyFields[fd.JSONName()]
					if !isMoneyName && !moneyName.MatchString(name) {
						continue
					}
					where := string(m.FullName()) + "." + name
					if isMoneyName && fd.Kind() != protoreflect.Int64Kind {
						t.Errorf("%s: JSON name %s, which -o json takes for money, is a %s", where, fd.JSONName(), fd.Kind())
					}
					if !isMoneyName && (fd.Kind() == protoreflect.Int64Kind || fd.Kind() == protoreflect.Uint64Kind) {
						t.Errorf("%s sounds like money but its JSON name %s is not in moneyFields", where, fd.JSONName())
					}
					if isMoneyName {
						found = append(found, where)
					}
				}
			}
		}
		walk(f.Messages())
		return true
	})
	for _, want := range []string{"orders.v1.Order.total", "orders.v1.Order.paid_amount", "orders.v1.LineItem.unit_price",
		"orders.v1.LineItem.line_total", "orders.v1.PaymentAuthorized.amount", "orders.v1.Money.amount"} {
		if !slices.Contains(found, want) {
			t.Errorf("%s is not among the amounts found: %v", want, found)
		}
	}
}

func TestWithMoney(t *testing.T) {
	in := `{"events":[{"orderId":"o-1","event":{"orderCreated":{"customerId":"c","currency":"KWD","lines":[]}}},` +
		`{"orderId":"o-1","event":{"orderPlaced":{"total":"1255"}}},{"orderId":"o-2","event":{"orderPlaced":{"total":"7"}}}],` +
		`"summary":{"lifetimeSpend":[{"currency":"JPY","amount":"1200"}]},"position":"3"}`
	want := `{"events":[{"orderId":"o-1","event":{"orderCreated":{"customerId":"c","currency":"KWD","lines":[]}}},` +
		`{"orderId":"o-1","event":{"orderPlaced":{"total":{"minor":1255,"currency":"KWD","decimal":"1.255"}}}},` +
		`{"orderId":"o-2","event":{"orderPlaced":{"total":{"minor":7,"currency":""}}}}],` +
		`"summary":{"lifetimeSpend":[{"currency":"JPY","amount":{"minor":1200,"currency":"JPY","decimal":"1200"}}]},"position":"3"}`
	got, err := withMoney([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if _, err := withMoney([]byte(`{"total":"x"}`)); err == nil {
		t.Fatal("a total that is no integer was accepted")
	}
}
