package console_test

import (
	"fmt"
	"net/http"
	"testing"
)

// An order page left open while its customer is forgotten: the query
// service's watch sends the erasure as a change of the order (its address
// and tracking number are erased; its revision stays, the event is on the
// customers' subject), and the page must be told, as of any change, so the
// user does not go on reading (and acting on) personal data that no longer
// exists. The console dropped every change at the page's revision, so the
// erasure never reached the page: the first event it got was the next
// change of the order's own.
func TestOpenOrderPageIsToldOfItsErasure(t *testing.T) {
	c, cl, _ := startWithAdmin(t)
	if res := cl.signIn(adminToken, ""); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %s", res.Status)
	}
	id, path := c.createOrder(t, "cust-erased-live") // address "Ada, 1 Analytical Way"
	res, page := cl.do("GET", path, nil, nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("order page: %s", res.Status)
	}
	stream := cl.live(liveOf(t, page))
	forgot := fmt.Sprint(c.api(t, "POST", "/v1/admin/customers/cust-erased-live:forget", map[string]any{})["position"])
	// A change of the order's own after the erasure: the stream's first
	// event is the erasure's, or this one's if the erasure was dropped.
	added := fmt.Sprint(c.api(t, "POST", "/v1/orders/"+id+"/items", map[string]any{"sku": "PEN-9", "quantity": "1", "unitPrice": "199"})["position"])
	if e := stream.next(); e.Name != "changed" || e.ID != forgot {
		t.Fatalf("first event %q at position %s; want the erasure's notice at position %s (the next change is at %s):\n%s", e.Name, e.ID, forgot, added, e.Data)
	}
}
