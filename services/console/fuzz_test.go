package console_test

import (
	"net/url"
	"strings"
	"sync"
	"testing"
)

// fuzzPages are the console's pages and forms that answer once (no live
// stream, no rebuild), with {} for the fuzzed order id and command.
var fuzzPages = []struct{ method, path string }{
	{"GET", "/console/orders"},
	{"GET", "/console/orders/{id}"},
	{"GET", "/console/orders/{id}/timeline"},
	{"POST", "/console/orders/{id}/{command}"},
	{"GET", "/console/audit"},
	{"GET", "/console/audit/verify"},
	{"GET", "/console/audit/export"},
	{"GET", "/console/operations"},
	{"GET", "/console/operations/projection"},
	{"POST", "/console/operations/parked/retry"},
	{"POST", "/console/operations/parked/settle"},
	{"GET", "/console/"},
	{"GET", "/console/login"},
}

// FuzzConsoleRefusesBadInputClearly signs in as an admin and sends the
// console's pages and forms any order id, command and two query or form
// fields a browser could. Bad input gets a page that says so (a 4xx), or
// a redirect; never a 5xx.
func FuzzConsoleRefusesBadInputClearly(f *testing.F) {
	f.Add(uint8(0), "", "", "status", "ORDER_STATUS_NOPE", "page", "x")
	f.Add(uint8(1), "no-such-order", "", "version", "-1", "after", "18446744073709551615")
	f.Add(uint8(3), "o-1", "place", "expected_revision", "abc", "reason", "")
	f.Add(uint8(3), "o-1", "add-item", "quantity", "1e99", "unit_price", "NaN")
	f.Add(uint8(3), "o%2F1", "nope", "sku", strings.Repeat("s", 300), "csrf", "forged")
	f.Add(uint8(4), "", "", "order", "<script>", "from", "2026-13-45")
	f.Add(uint8(6), "", "", "type", "NoSuchEvent", "from_position", "-3")
	f.Add(uint8(9), "", "", "order_id", "\x00", "kind", "refund")
	f.Add(uint8(10), "", "", "order_id", "o-1", "kind", "PAYMENT_JOB_KIND_NOPE")
	c := startAuthed(f)
	var (
		once sync.Once
		cl   *client
		csrf string
	)
	f.Fuzz(func(t *testing.T, page uint8, id, command, k1, v1, k2, v2 string) {
		once.Do(func() {
			cl = newClient(t, c.base)
			cl.signIn(adminToken, "")
			_, body := cl.do("GET", "/console/orders", nil, nil)
			if m := csrfMeta.FindStringSubmatch(body); m != nil {
				csrf = m[1]
			}
		})
		if csrf == "" {
			t.Fatal("no CSRF token on the orders page")
		}
		cl.t = t
		p := fuzzPages[int(page)%len(fuzzPages)]
		path := strings.NewReplacer("{id}", url.PathEscape(id), "{command}", url.PathEscape(command)).Replace(p.path)
		fields := url.Values{}
		fields.Add(k1, v1)
		fields.Add(k2, v2)
		var form url.Values
		if p.method == "POST" {
			form = fields
			form.Set("csrf", csrf)
		} else {
			path += "?" + fields.Encode()
		}
		res, body := cl.do(p.method, path, form, nil)
		if res.StatusCode >= 500 {
			t.Fatalf("%s %s (form %v): %s\n%.500s", p.method, path, form, res.Status, body)
		}
	})
}
