package httpapi_test

import "testing"

// A body that gives a path parameter's field as JSON null or as "" leaves
// it unset (proto3 JSON): the same message as the body without the key,
// which the gateway completes from the path and the service accepts. Both
// were refused as contradicting the path ("orderId: differs from the
// path's"), though they name no other order or SKU.
func TestUnsetPathFieldInBodyIsNoContradiction(t *testing.T) {
	e := start(t)
	c := expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200)
	o := "/v1/orders/" + c.str("order", "orderId")
	for _, body := range []string{
		`{"orderId":null,"quantity":"3"}`,
		`{"sku":null,"quantity":"4"}`,
		`{"orderId":"","quantity":"5"}`,
		`{"sku":"","quantity":"6"}`,
	} {
		r := e.do(t, "PATCH", o+"/items/BOOK-1", body, "Idempotency-Key", key())
		if r.code != 200 {
			t.Errorf("PATCH %s: HTTP %d %s; want 200, as without the key", body, r.code, r.raw)
		}
	}
}
