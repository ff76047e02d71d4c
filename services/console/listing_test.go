package console_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// createWithID creates an order with the given id through the REST API and
// returns the log position of its creation.
func createWithID(t *testing.T, c *console, id string) string {
	t.Helper()
	out := c.api(t, "POST", "/v1/orders", map[string]any{
		"orderId": id, "customerId": "cust-ids", "currency": "EUR",
		"lines": []map[string]any{{"sku": "BOOK-1", "quantity": "1", "unitPrice": "1250"}},
	})
	return out["position"].(string)
}

// An order id is any printable ASCII without space, '.', '*' or '>': the
// console shows every such order at the link it renders for it. "events"
// was taken by the list's live stream, then at /console/orders/events.
func TestOrderPagesOfUnusualIDs(t *testing.T) {
	c, cl, _ := startWithAdmin(t)
	if res := cl.signIn(adminToken, ""); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %s", res.Status)
	}
	var pos string
	ids := []string{"a/b", "50%off", "q?x=1#frag", "semi;colon,comma", "events"}
	for _, id := range ids {
		pos = createWithID(t, c, id)
	}
	c.awaitList(t, pos)
	res, list := cl.do("GET", "/console/orders?customer=cust-ids", nil, nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("orders page: %s", res.Status)
	}
	links := regexp.MustCompile(`<a href="(/console/orders/[^"]+)"><code>([^<]*)</code></a>`).FindAllStringSubmatch(list, -1)
	if len(links) != len(ids) {
		t.Fatalf("%d order links on the list, want %d:\n%s", len(links), len(ids), list)
	}
	for _, l := range links {
		href, id := unescapeHTML(l[1]), unescapeHTML(l[2])
		t.Run(url.PathEscape(id), func(t *testing.T) {
			res, page := cl.do("GET", href, nil, nil)
			if res.StatusCode != http.StatusOK || !strings.Contains(page, `id="order-id"`) {
				t.Fatalf("the list links order %q to %s, which answers %s %q…; want its order page",
					id, href, res.Status, page[:min(len(page), 120)])
			}
		})
	}
}

func unescapeHTML(s string) string {
	return strings.NewReplacer("&amp;", "&", "&#43;", "+", "&#39;", "'", "&#34;", `"`, "&lt;", "<", "&gt;", ">").Replace(s)
}

// keysOf lists the keys of a JSON object, nested objects' as path.key.
func keysOf(prefix string, v any, into map[string]bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return
	}
	for k, vv := range m {
		into[prefix+k] = true
		keysOf(prefix+k+".", vv, into)
	}
}

// The console's export is one RecordedEvent per line "as the REST API
// spells it": the REST API (and ordersctl audit export) write every field,
// zero values included, so a consumer of one reads the other. The export
// left out the empty ones.
func TestExportSpellsEventsAsREST(t *testing.T) {
	c, cl, _ := startWithAdmin(t)
	if res := cl.signIn(adminToken, ""); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %s", res.Status)
	}
	createWithID(t, c, "exp-spell-1")
	res, body := cl.do("GET", "/console/audit/export?orders=exp-spell-1", nil, nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("console export: %s", res.Status)
	}
	var console map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(body)), &console); err != nil {
		t.Fatalf("console export line %q: %v", body, err)
	}
	req, _ := http.NewRequestWithContext(t.Context(), "GET", c.base+"/v1/events?orderIds=exp-spell-1", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	rres, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer rres.Body.Close()
	b, _ := io.ReadAll(rres.Body)
	var rest struct {
		Result struct {
			Event map[string]any `json:"event"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(string(b))), &rest); err != nil {
		t.Fatalf("REST line %q: %v", b, err)
	}
	want, got := map[string]bool{}, map[string]bool{}
	keysOf("", rest.Result.Event, want)
	keysOf("", console, got)
	if len(want) == 0 {
		t.Fatalf("the REST API's event has no fields to compare: %s", b)
	}
	var missing []string
	for k := range want {
		if !got[k] {
			missing = append(missing, k)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Fatalf("the console's export leaves out fields the REST API's event has: %v\nconsole: %s\nREST:    %s", missing, body, b)
	}
}

var rowOrder = regexp.MustCompile(`<tr data-order="([^"]+)">`)
var nextLink = regexp.MustCompile(`<a href="(/console/orders\?[^"]+)" rel="next">`)

// The orders list updates itself as orders are created, its "Next page"
// link with it: a user who reads the live first page and then follows its
// "Next page" sees every order. The link used to stay where the page was
// first read, and the orders that new ones pushed off the first page were
// on neither.
func TestLiveFirstPageAndItsNextPageSkipNothing(t *testing.T) {
	c, cl, _ := startWithAdmin(t)
	if res := cl.signIn(adminToken, ""); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %s", res.Status)
	}
	var pos string
	all := map[string]bool{}
	for range 27 { // more than a page (25)
		id, page := c.createOrder(t, "cust-pager")
		all[id] = true
		u, _ := url.Parse(page)
		pos = u.Query().Get("after")
	}
	c.awaitList(t, pos)
	res, list := cl.do("GET", "/console/orders?customer=cust-pager", nil, nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("orders page: %s", res.Status)
	}
	if nextLink.FindStringSubmatch(list) == nil {
		t.Fatalf("no next page link on a list of 27")
	}
	stream := cl.live(liveOf(t, list))
	// Two new orders come while the page is open.
	var want []string
	for range 2 {
		id, _ := c.createOrder(t, "cust-pager")
		all[id] = true
		want = append(want, id)
	}
	var first []string
	var next []string
	for !containsAll(first, want) { // the rows event that shows both
		e := stream.next()
		if e.Name != "rows" {
			continue
		}
		first = nil
		for _, m := range rowOrder.FindAllStringSubmatch(e.Data, -1) {
			first = append(first, m[1])
		}
		next = nextLink.FindStringSubmatch(e.Data)
	}
	if next == nil {
		t.Fatal("the live page has no next page link")
	}
	res, second := cl.do("GET", unescapeHTML(next[1]), nil, nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("next page: %s", res.Status)
	}
	seen := map[string]bool{}
	for _, id := range first {
		seen[id] = true
	}
	for _, m := range rowOrder.FindAllStringSubmatch(second, -1) {
		seen[m[1]] = true
	}
	var missing []string
	for id := range all {
		if !seen[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("the live first page and its Next page show %d of %d orders: %v never shown", len(seen), len(all), missing)
	}
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}
