package httpapi_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestWrongMethodNamesTheAllowedOnes checks that a 405 says which methods
// the path has in its Allow header, as HTTP requires of it, and that the
// header is exact: each method it names is answered on the path (with
// anything but 405), and each it leaves out gets the 405.
func TestWrongMethodNamesTheAllowedOnes(t *testing.T) {
	e := start(t)
	methods := []string{http.MethodDelete, http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPatch, http.MethodPost, http.MethodPut}
	for path, want := range map[string]string{
		"/v1/orders":                                "GET, HEAD, POST",
		"/v1/orders/no-such-order":                  "GET, HEAD",
		"/v1/orders/no-such-order/items/A":          "DELETE, PATCH",
		"/v1/orders/no-such-order/shipping-address": "PUT",
		// An empty segment is a variable's value to grpc-gateway too.
		"/v1/orders/": "GET, HEAD",
		// GET takes the last segment whole: order "no-such-order:place".
		"/v1/orders/no-such-order:place": "GET, HEAD, POST",
		// A stream has no HEAD: it would hold the connection. GET of
		// order "x:watch" matches the watch's path too.
		"/v1/orders:watch":   "GET",
		"/v1/orders/x:watch": "GET",
	} {
		for _, m := range methods {
			allowed := slices.Contains(strings.Split(want, ", "), m)
			if allowed && m == http.MethodGet && strings.HasSuffix(path, ":watch") {
				continue // a watch does not end by itself
			}
			body := ""
			if m == http.MethodPost || m == http.MethodPut || m == http.MethodPatch {
				body = "{}"
			}
			r := e.do(t, m, path, body)
			switch {
			case allowed && r.code == http.StatusMethodNotAllowed:
				t.Errorf("%s %s: 405, but the path has %s", m, path, want)
			case !allowed && r.code != http.StatusMethodNotAllowed:
				t.Errorf("%s %s: HTTP %d, want 405", m, path, r.code)
			case !allowed && r.header.Get("Allow") != want:
				t.Errorf("%s %s: Allow %q, want %q", m, path, r.header.Get("Allow"), want)
			}
		}
	}
}

// The Allow header is worked out on the path as sent, as the gateway
// routes it: a %2F stays within its segment even when the path also holds
// a character a client may send unescaped ('|' here, as curl sends it).
func TestAllowMatchesThePathAsSent(t *testing.T) {
	e := start(t)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, e.base, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = "/v1/orders/a%2Fb|c:place" // written as is, not escaped again
	res, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD, POST" {
		t.Fatalf("PUT %s: HTTP %d, Allow %q; want 405 with GET, HEAD, POST", req.URL.Opaque, res.StatusCode, res.Header.Get("Allow"))
	}
}

// HEAD answers as GET without the body: the status, the ETag and the
// Content-Type a GET of the same resource gets, for an order, a list and
// a missing order alike.
func TestHeadAnswersAsGetWithoutTheBody(t *testing.T) {
	e := start(t)
	c := expect(t, e.do(t, http.MethodPost, "/v1/orders", newOrder, "Idempotency-Key", key()), http.StatusOK)
	pos := c.str("position")
	for _, path := range []string{"/v1/orders/" + c.str("order", "orderId"), "/v1/orders?pageSize=1", "/v1/orders/no-such-order"} {
		get := e.do(t, http.MethodGet, path, "", "X-Min-Position", pos)
		head := e.do(t, http.MethodHead, path, "", "X-Min-Position", pos)
		if head.code != get.code || head.raw != "" {
			t.Errorf("HEAD %s: HTTP %d with %d bytes; GET answered %d", path, head.code, len(head.raw), get.code)
		}
		for _, h := range []string{"ETag", "Content-Type"} {
			if head.header.Get(h) != get.header.Get(h) {
				t.Errorf("HEAD %s: %s %q, GET's %q", path, h, head.header.Get(h), get.header.Get(h))
			}
		}
	}
}
