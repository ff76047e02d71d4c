package httpapi_test

import "testing"

// The gateway answers 412 to a command that cannot succeed under its
// preconditions (If-None-Match: * on a command but a create; a weak
// If-Match on any command), and the served document lists it for every
// command: it listed 412 only for the operations that take If-Match as
// their expected revision, and a client generated from it had no case for
// the others' 412.
func TestOpenAPIListsEvery412TheGatewayAnswers(t *testing.T) {
	e := start(t)
	for _, c := range []struct {
		name, method, path, docPath, body string
		headers                           []string
	}{
		{"ForgetCustomer, If-None-Match: *", "POST", "/v1/admin/customers/c1:forget", "/v1/admin/customers/{customerId}:forget", `{}`,
			[]string{"Idempotency-Key", key(), "If-None-Match", "*"}},
		{"CreateOrder, weak If-Match", "POST", "/v1/orders", "/v1/orders", newOrder,
			[]string{"Idempotency-Key", key(), "If-Match", `W/"1"`}},
		{"VerifyOrder, If-None-Match: *", "POST", "/v1/orders/o1:verify", "/v1/orders/{orderId}:verify", `{}`,
			[]string{"If-None-Match", "*"}},
	} {
		r := e.do(t, c.method, c.path, c.body, c.headers...)
		if r.code != 412 {
			t.Fatalf("%s: HTTP %d, want the gateway's 412: %s", c.name, r.code, r.raw)
		}
		if _, ok := opResponses(openAPIOperation(t, c.docPath, "post"))["412"]; !ok {
			t.Errorf("%s: the gateway answers 412 (%s), the document lists no 412 for POST %s", c.name, r.raw, c.docPath)
		}
	}
}
