package console_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// An order id may hold a comma (any printable ASCII without space; the
// console shows such orders, see TestOrderPagesOfUnusualIDs): the export's
// order filter splits on spaces only. It split on commas too, and another
// order's events were exported in its place.
func TestExportOfAnOrderIDWithAComma(t *testing.T) {
	c, cl, _ := startWithAdmin(t)
	if res := cl.signIn(adminToken, ""); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %s", res.Status)
	}
	createWithID(t, c, "exp")
	createWithID(t, c, "exp,comma")
	res, body := cl.do("GET", "/console/audit/export?"+url.Values{"orders": {"exp,comma"}}.Encode(), nil, nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("export: %s", res.Status)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(body), "\n") {
		if l == "" {
			continue
		}
		var ev struct {
			OrderID string `json:"orderId"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		got = append(got, ev.OrderID)
	}
	if len(got) != 1 || got[0] != "exp,comma" {
		t.Fatalf("export of order \"exp,comma\": events of orders %q, want the one event of \"exp,comma\"", got)
	}
}

// The order page offers "Place order" on every draft; placing one without
// a shipping address fails FAILED_PRECONDITION ("cannot place an order
// without a shipping address; set one first"), and the console says so. It
// said the order's status did not allow it: wrong (a draft may be placed)
// and hiding what to do.
func TestPlaceRefusalSaysWhy(t *testing.T) {
	c, cl, _ := startWithAdmin(t)
	if res := cl.signIn(adminToken, ""); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %s", res.Status)
	}
	pos := createWithID(t, c, "no-address")
	res, page := cl.do("GET", "/console/orders/no-address?after="+pos, nil, nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(page, `id="cmd-place"`) {
		t.Fatalf("order page: %s, place offered %v", res.Status, strings.Contains(page, `id="cmd-place"`))
	}
	m := csrfMeta.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token")
	}
	res, body := cl.do("POST", "/console/orders/no-address/place", url.Values{"csrf": {m[1]}, "expected_revision": {"1"}}, nil)
	if res.StatusCode != http.StatusConflict {
		t.Fatalf("place without an address: %s, want 409", res.Status)
	}
	if !strings.Contains(body, "shipping address") {
		i := strings.Index(body, "class=\"flash")
		t.Fatalf("place without an address: the page does not say why; it says %q", body[max(i, 0):min(len(body), max(i, 0)+200)])
	}
}
