package command

import (
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Every request of the service that names an order but CreateOrder's has
// an optional expected_revision, so change reads the guard of each; a
// request without the field would silently run unguarded.
func TestEveryChangeRequestHasAnExpectedRevision(t *testing.T) {
	methods := ordersv1.File_orders_v1_orders_proto.Services().ByName("OrderCommandService").Methods()
	checked := 0
	for i := range methods.Len() {
		in := methods.Get(i).Input()
		mt, err := protoregistry.GlobalTypes.FindMessageByName(in.FullName())
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := mt.New().Interface().(orderRequest); !ok || in.Name() == "CreateOrderRequest" {
			continue
		}
		checked++
		fd := in.Fields().ByName(expectedRevisionField)
		if fd == nil || !fd.HasPresence() || fd.Kind() != protoreflect.Uint64Kind {
			t.Errorf("%s: no optional uint64 %s", in.FullName(), expectedRevisionField)
		}
	}
	if checked < 10 {
		t.Errorf("checked %d requests, want the 10 that change an order", checked)
	}
}

func TestExpectedRevisionTellsUnsetFromZero(t *testing.T) {
	if got := expectedRevision(&ordersv1.PlaceOrderRequest{}); got != nil {
		t.Errorf("unset: %v, want nil", *got)
	}
	zero, five := uint64(0), uint64(5)
	for _, want := range []*uint64{&zero, &five} {
		if got := expectedRevision(&ordersv1.CancelOrderRequest{ExpectedRevision: want}); got == nil || *got != *want {
			t.Errorf("set to %d: got %v", *want, got)
		}
	}
}
