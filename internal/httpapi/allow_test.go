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
	methods := []string{http.MethodDelete, http.MethodGet, http.MethodOptions, http.MethodPatch, http.MethodPost, http.MethodPut}
	for path, want := range map[string]string{
		"/v1/orders":                                "GET, POST",
		"/v1/orders/no-such-order":                  "GET",
		"/v1/orders/no-such-order/items/A":          "DELETE, PATCH",
		"/v1/orders/no-such-order/shipping-address": "PUT",
		// An empty segment is a variable's value to grpc-gateway too.
		"/v1/orders/": "GET",
		// GET takes the last segment whole: order "no-such-order:place".
		"/v1/orders/no-such-order:place": "GET, POST",
		"/v1/orders:watch":               "GET",
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
	if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, POST" {
		t.Fatalf("PUT %s: HTTP %d, Allow %q; want 405 with GET, POST", req.URL.Opaque, res.StatusCode, res.Header.Get("Allow"))
	}
}
