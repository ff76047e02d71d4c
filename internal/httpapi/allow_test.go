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
