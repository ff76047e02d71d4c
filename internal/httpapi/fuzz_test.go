package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode"
)

// fuzzRoutes are the gateway's routes that answer once (no stream, no
// read-model swap): every method and path template a client can reach.
var fuzzRoutes = []struct{ method, path string }{
	{"GET", "/v1/orders"},
	{"POST", "/v1/orders"},
	{"GET", "/v1/orders/{}"},
	{"GET", "/v1/orders/{}/history"},
	{"GET", "/v1/orders/{}/state"},
	{"POST", "/v1/orders/{}/items"},
	{"PATCH", "/v1/orders/{}/items/{}"},
	{"DELETE", "/v1/orders/{}/items/{}"},
	{"PUT", "/v1/orders/{}/shipping-address"},
	{"POST", "/v1/orders/{}/payments"},
	{"POST", "/v1/orders/{}/refunds"},
	{"POST", "/v1/orders/{}:place"},
	{"POST", "/v1/orders/{}:cancel"},
	{"POST", "/v1/orders/{}:ship"},
	{"POST", "/v1/orders/{}:deliver"},
	{"POST", "/v1/orders/{}:verify"},
	{"GET", "/v1/customers/{}/summary"},
	{"GET", "/v1/admin/projection"},
	{"GET", "/v1/admin/deadlines"},
	{"GET", "/v1/admin/parked-payments"},
	{"POST", "/v1/admin/parked-payments:retry"},
	{"POST", "/v1/admin/customers/{}:forget"},
	{"PUT", "/v1/orders"},
	{"GET", "/v1/{}"},
}

// fuzzHeaders are the request headers whose values the gateway reads.
var fuzzHeaders = []string{"X-Min-Position", "Idempotency-Key", "If-Match", "Grpc-Timeout", "Last-Event-ID", "Content-Type", "X-Max-Wait", "Accept"}

// FuzzGatewayRefusesBadInputClearly sends the gateway whatever a client
// could: any route, path segment, query string, body and value of a header
// it reads. Bad input must get a clear refusal (a 4xx, or 501 for a service
// this node does not serve) in grpc-gateway's status JSON, never a 5xx nor
// internal detail, and the gateway must keep answering.
func FuzzGatewayRefusesBadInputClearly(f *testing.F) {
	f.Add(uint8(1), "", "", `{"customerId":"c","currency":"EUR"}`, uint8(0), "")
	f.Add(uint8(2), "no-such-order", "consistency.minPosition=1&consistency.maxWait=0.01s", "", uint8(0), "18446744073709551615")
	f.Add(uint8(0), "", "pageSize=-1&status=ORDER_STATUS_NOPE&customerId=%ff", "", uint8(3), "1H")
	f.Add(uint8(5), "a%2Fb", "", `{"sku":"A","quantity":"1e9","unitPrice":"NaN"}`, uint8(2), `W/"x"`)
	f.Add(uint8(9), "o", "", `{"amount":{"minor":"-1","currency":"eur"}}`, uint8(1), strings.Repeat("k", 300))
	f.Add(uint8(6), "o\x00", "sku=%zz", "[]", uint8(5), "text/plain")
	f.Add(uint8(16), "c|d", "", "", uint8(4), "-3")
	f.Add(uint8(11), "o", "", `{"expectedRevision":"99999999999999999999"}`, uint8(6), "0.5s")
	e := start(f)
	f.Fuzz(func(t *testing.T, route uint8, segment, query, body string, header uint8, value string) {
		r := fuzzRoutes[int(route)%len(fuzzRoutes)]
		path := strings.ReplaceAll(r.path, "{}", url.PathEscape(segment))
		if strings.ContainsFunc(query, func(c rune) bool { return c <= ' ' || c >= 0x7f }) {
			return // not a request target: Go's HTTP server refuses it before the gateway
		}
		if query != "" {
			path += "?" + query
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, r.method, e.base+path, strings.NewReader(body))
		if err != nil {
			return // not a request a client can send
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if validHeaderValue(value) {
			req.Header.Set(fuzzHeaders[int(header)%len(fuzzHeaders)], value)
		}
		res, err := e.http.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", r.method, path, err)
		}
		defer res.Body.Close()
		raw, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatalf("%s %s: reading the answer: %v", r.method, path, err)
		}
		if res.StatusCode >= 500 && res.StatusCode != http.StatusNotImplemented {
			t.Fatalf("%s %s (header %s: %q, body %q): HTTP %d %.300s", r.method, path, fuzzHeaders[int(header)%len(fuzzHeaders)], value, body, res.StatusCode, raw)
		}
		if res.StatusCode >= 400 {
			assertStatusJSON(t, replyOf(res, raw))
		}
	})
}

// validHeaderValue reports whether Go's HTTP client sends v as a header
// value: printable ASCII and tabs, no line breaks.
func validHeaderValue(v string) bool {
	for _, c := range v {
		if c > unicode.MaxASCII || (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return v != ""
}
