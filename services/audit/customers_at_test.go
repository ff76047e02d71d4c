package audit_test

import (
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/internal/pii"
	"github.com/orderstream/orderstream/order"
	"github.com/orderstream/orderstream/services/audit"
	"github.com/orderstream/orderstream/services/command"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The record of erasures, under the reserved id no order may have, is no
// order: its state at a version is NOT_FOUND, where it answered an order
// with no id and no status, its last event a CustomerForgotten. Its
// history stays readable.
func TestCustomersRecordHasNoStateAt(t *testing.T) {
	keys, store := pii.NewMemStore(), memstore.New()
	forgetter, err := command.New(store, command.WithKeyring(pii.NewKeyring(keys, masterKey(t))))
	if err != nil {
		t.Fatal(err)
	}
	aud, err := audit.New(store, nil)
	if err != nil {
		t.Fatal(err)
	}
	client := ordersv1.NewOrderAuditServiceClient(listen(t, func(gs *grpc.Server) { ordersv1.RegisterOrderAuditServiceServer(gs, aud) }))
	if _, err := forgetter.ForgetCustomer(t.Context(), "c-gone", rid()); err != nil {
		t.Fatal(err)
	}
	if h, err := client.GetOrderHistory(t.Context(), &ordersv1.GetOrderHistoryRequest{OrderId: order.CustomersSubjectID}); err != nil || len(h.GetEvents()) != 1 {
		t.Fatalf("history of the erasures: %v, %v; want the one erasure", h, err)
	}
	at, err := client.GetOrderAt(t.Context(), &ordersv1.GetOrderAtRequest{OrderId: order.CustomersSubjectID, Point: &ordersv1.GetOrderAtRequest_Version{Version: 1}})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("state of the erasures' record at version 1: %v, %v; want NOT_FOUND", at, err)
	}
}
