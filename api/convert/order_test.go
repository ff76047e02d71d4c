package convert_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	"github.com/orderstream/orderstream/order"
)

// Every field of a state survives OrderToProto and OrderFromProto: a field
// added to order.State and not to both converters fails here, since each
// field is set to a value of its own.
func TestOrderFromProtoInvertsOrderToProto(t *testing.T) {
	var s order.State
	v := reflect.ValueOf(&s).Elem()
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
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
