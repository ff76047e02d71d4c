package convert_test

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/order"
	"google.golang.org/protobuf/proto"
)

// Every field of a state survives OrderToProto and OrderFromProto: a field
// added to order.State and not to both converters fails here, since each
// field is set to a value of its own.
func TestOrderFromProtoInvertsOrderToProto(t *testing.T) {
	s := fullState(t, time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	if got := convert.OrderFromProto(convert.OrderToProto(s)); !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip\n got %+v\nwant %+v", got, s)
	}
	erased := order.State{Shipping: &order.Address{Erased: true}, TrackingNumberErased: true}
	if got := convert.OrderFromProto(convert.OrderToProto(erased)); !reflect.DeepEqual(got, erased) {
		t.Fatalf("erased state round trip: %+v", got)
	}
	if got := convert.OrderFromProto(convert.OrderToProto(order.State{})); !reflect.DeepEqual(got, order.State{}) {
		t.Fatalf("zero state round trip: %+v", got)
	}
}

// One message filled by OrderIntoProto for order after order holds exactly
// what OrderToProto makes of each, down to the marshalled bytes, whatever
// the one before held (more lines, an address, times it has not), and it
// keeps its address and line messages for the next.
func TestOrderIntoProtoLeavesNothingOfTheOrderBefore(t *testing.T) {
	full := fullState(t, time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	other := fullState(t, time.Date(2026, 12, 2, 8, 30, 0, 0, time.UTC))
	other.Lines = other.Lines[:1]
	other.PaidAt, other.RefundedAt, other.TrackingNumber = time.Time{}, time.Time{}, ""
	erased := order.State{Shipping: &order.Address{Erased: true}, TrackingNumberErased: true}
	var scratch ordersv1.Order
	for i, s := range []order.State{full, {}, other, full, erased, other} {
		convert.OrderIntoProto(&scratch, s)
		want := convert.OrderToProto(s)
		got, err := proto.MarshalOptions{Deterministic: true}.Marshal(&scratch)
		if err != nil {
			t.Fatal(err)
		}
		wantBytes, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&scratch, want) || !bytes.Equal(got, wantBytes) {
			t.Fatalf("state %d:\n got %v\nwant %v", i, &scratch, want)
		}
	}
	convert.OrderIntoProto(&scratch, full)
	addr, line := scratch.GetShippingAddress(), scratch.GetLines()[0]
	convert.OrderIntoProto(&scratch, other)
	if scratch.GetShippingAddress() != addr || scratch.GetLines()[0] != line {
		t.Fatal("the address and line messages were allocated again")
	}
}

// fullState is a state with every field set to a value of its own, times
// from at.
func fullState(t *testing.T, at time.Time) order.State {
	t.Helper()
	var s order.State
	v := reflect.ValueOf(&s).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Interface().(type) {
		case string:
			f.SetString(v.Type().Field(i).Name)
		case bool:
			f.SetBool(true)
		case int64, int:
			f.SetInt(int64(100 + i))
		case order.Status:
			f.Set(reflect.ValueOf(order.StatusShipped))
		case time.Time:
			f.Set(reflect.ValueOf(at.Add(time.Duration(i)*time.Hour + time.Duration(i))))
		case []order.Line:
			f.Set(reflect.ValueOf([]order.Line{{SKU: "A", Quantity: 2, UnitPrice: 250}, {SKU: "B", Quantity: 1, UnitPrice: 9}}))
		case *order.Address:
			f.Set(reflect.ValueOf(&order.Address{Name: "N", Line1: "L1", Line2: "L2", City: "C", Region: "R", PostalCode: "P", Country: "FR"}))
		default:
			t.Fatalf("field %s of type %s: teach this test a value for it", v.Type().Field(i).Name, f.Type())
		}
	}
	return s
}
