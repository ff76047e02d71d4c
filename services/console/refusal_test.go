package console_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/orderstream/orderstream/order"
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
	cl, page, csrf := draftPage(t, "no-address")
	if !strings.Contains(page, `id="cmd-place"`) {
		t.Fatal("order page: place not offered")
	}
	res, body := cl.do("POST", "/console/orders/no-address/place", url.Values{"csrf": {csrf}, "expected_revision": {"1"}}, nil)
	if res.StatusCode != http.StatusConflict {
		t.Fatalf("place without an address: %s, want 409", res.Status)
	}
	if !strings.Contains(body, "shipping address") {
		i := strings.Index(body, "class=\"flash")
		t.Fatalf("place without an address: the page does not say why; it says %q", body[max(i, 0):min(len(body), max(i, 0)+200)])
	}
}

// What the console takes from an address or a form goes into gRPC
// requests, whose strings must be UTF-8. One that was not failed to
// encode on the console's side, with INTERNAL, and the page said
// "Something went wrong" (500) for the user's bad input. It is refused as
// such (400).
func TestInvalidUTF8IsRefused(t *testing.T) {
	cl, _, csrf := draftPage(t, "utf8")
	for _, tc := range []struct {
		method, path string
		form         url.Values
	}{
		{"GET", "/console/orders/no-su%80%FF-order", nil},
		{"GET", "/console/orders?customer=%FF", nil},
		{"POST", "/console/orders/utf8/cancel", url.Values{"csrf": {csrf}, "expected_revision": {"1"}, "reason": {"\xff"}}},
		{"POST", "/console/orders/utf8/place", url.Values{"csrf": {csrf}, "expected_revision": {"1"}, "request_id": {"\xff"}}},
	} {
		if res, _ := cl.do(tc.method, tc.path, tc.form, nil); res.StatusCode != http.StatusBadRequest {
			t.Errorf("%s %s: %s, want 400", tc.method, tc.path, res.Status)
		}
	}
}

// draftPage signs an admin in to a console of its own, creates the draft
// order id (no shipping address) and returns the client, the order's page
// and the page's CSRF token.
func draftPage(t *testing.T, id string) (cl *client, page, csrf string) {
	t.Helper()
	c, cl, _ := startWithAdmin(t)
	if res := cl.signIn(adminToken, ""); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %s", res.Status)
	}
	pos := createWithID(t, c, id)
	res, page := cl.do("GET", "/console/orders/"+url.PathEscape(id)+"?after="+pos, nil, nil)
	m := csrfMeta.FindStringSubmatch(page)
	if res.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("order page of %s: %s, CSRF token found %v", id, res.Status, m != nil)
	}
	return cl, page, m[1]
}

// A refused command's answer is the order's page at the command's address
// (POST /console/orders/{id}/place). That address is where the page's
// script sends the user back after signing in again, and what it asks, as
// a check of the session, when its live stream ends: it was a page that
// does not exist (404, before any look at the session), so the user landed
// on "no such page" after signing in, and a session that ended was never
// noticed, the stream retried for ever. Now it leads to the order.
func TestRefusedCommandsAddressLeadsToTheOrder(t *testing.T) {
	cl, _, csrf := draftPage(t, "refused-url")
	post := "/console/orders/refused-url/place"
	if res, _ := cl.do("POST", post, url.Values{"csrf": {csrf}, "expected_revision": {"1"}}, nil); res.StatusCode != http.StatusConflict {
		t.Fatalf("a place of a draft without an address: %s, want 409", res.Status)
	}
	res := cl.signIn(adminToken, post)
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %s", res.Status)
	}
	res, _ = cl.do("GET", res.Header.Get("Location"), nil, nil)
	if want := "/console/orders/refused-url"; res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != want {
		t.Fatalf("signed in again from the refused command's page: %s to %q; want 303 to %s", res.Status, res.Header.Get("Location"), want)
	}
	// The session ends (the token is revoked): the script's check of the
	// page's address says so.
	u, _ := url.Parse(cl.base + "/console/")
	cl.http.Jar.SetCookies(u, []*http.Cookie{{Name: "orderstream_console", Value: "revoked-token-0123456789", Path: "/console/"}})
	if res, _ := cl.do("GET", post, nil, map[string]string{"X-Console": "1"}); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the script's check of the refused command's address with an ended session: %s, want 401", res.Status)
	}
}

// A command the server refuses shows the order again with what was typed
// into its form kept in its fields: the cancel's reason was lost with the
// refusal, and had to be typed again.
func TestRefusedCommandKeepsWhatWasTyped(t *testing.T) {
	cl, _, csrf := draftPage(t, "keeps-typed")
	res, body := cl.do("POST", "/console/orders/keeps-typed/cancel", url.Values{"csrf": {csrf}, "expected_revision": {"7"}, "reason": {"customer asked by phone"}}, nil)
	if res.StatusCode != http.StatusConflict {
		t.Fatalf("cancel at a stale revision: %s, want 409", res.Status)
	}
	if !strings.Contains(body, `name="reason" maxlength="256" value="customer asked by phone"`) {
		i := strings.Index(body, `name="reason"`)
		t.Fatalf("the refused cancel's page lost the reason typed: %q", body[max(i, 0):min(len(body), max(i, 0)+120)])
	}
}

// A command form's text field takes as much as the service does
// (order.MaxTextLen characters): its maxlength was 200, where the service
// takes 256, so a longer reason could not be typed.
func TestFormFieldsTakeWhatTheServiceTakes(t *testing.T) {
	_, page, _ := draftPage(t, "field-limits")
	m := regexp.MustCompile(`name="reason" maxlength="(\d+)"`).FindStringSubmatch(page)
	if m == nil || m[1] != strconv.Itoa(order.MaxTextLen) {
		t.Fatalf("the cancel form's reason field: maxlength %v, want %d", m, order.MaxTextLen)
	}
}
