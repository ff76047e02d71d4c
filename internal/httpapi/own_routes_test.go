package httpapi_test

import (
	"net/http"
	"testing"
)

// Another method than GET or HEAD on the listener's own endpoints is 405
// naming the methods they take, as on the API's routes; it was 404 "no such
// route", the catch-all answering for a path that exists.
func TestWrongMethodOnOwnEndpointsIs405(t *testing.T) {
	e := start(t)
	for _, p := range []string{"/healthz", "/readyz", "/openapi.json", "/openapi-v2.json"} {
		for _, m := range []string{"POST", "DELETE"} {
			r := e.do(t, m, p, "")
			if r.code != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: HTTP %d Allow %q: %s; want 405 naming GET, HEAD", m, p, r.code, r.header.Get("Allow"), r.raw)
			}
		}
		if r := e.do(t, "GET", p, ""); r.code == http.StatusMethodNotAllowed {
			t.Errorf("GET %s: 405", p)
		}
	}
}
