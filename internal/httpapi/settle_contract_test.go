package httpapi_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/orderstream/orderstream/api/openapi"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// settleRefusing answers every settle with the refusal code gives.
type settleRefusing struct {
	ordersv1.UnimplementedPaymentAdminServiceServer
	code codes.Code
}

func (s settleRefusing) SettleParkedPayment(context.Context, *ordersv1.SettleParkedPaymentRequest) (*ordersv1.SettleParkedPaymentResponse, error) {
	return nil, status.Error(s.code, "refused")
}

// The statuses the gateway answers a settle with when the payments node
// refuses it (NOT_FOUND: nothing parked of that kind; ABORTED: a retry of
// it runs), as the RPC's contract says, are in the OpenAPI document: it
// derived a 404 from an order id in the path only, and a settle carries
// the order id in its body.
func TestSettleRefusalsAreInTheContract(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]struct {
			Responses map[string]any `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openapi.Spec, &doc); err != nil {
		t.Fatal(err)
	}
	documented := doc.Paths["/v1/admin/parked-payments:settle"]["post"].Responses
	for _, code := range []codes.Code{codes.NotFound, codes.Aborted} {
		gs := grpc.NewServer()
		ordersv1.RegisterPaymentAdminServiceServer(gs, settleRefusing{code: code})
		base, c := gatewayOver(t, serve(t, gs))
		r := do(t, c, "POST", base+"/v1/admin/parked-payments:settle", `{"orderId":"x","kind":"PAYMENT_JOB_KIND_CHARGE"}`)
		if documented[strconv.Itoa(r.code)] == nil {
			t.Errorf("%v: the gateway answers %d, which the OpenAPI document does not list for the settle", code, r.code)
		}
	}
}
