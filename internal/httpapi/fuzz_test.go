package httpapi_test

import (
	"cmp"
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/grpc"
)

// fuzzRoute is one request line the fuzz test sends, {…} standing for a
// path segment.
type fuzzRoute struct{ method, path string }

// fuzzRoutes are the gateway's routes (httpRules) whose gRPC method answers
// once, in a fixed order: not the streams (watches, the event stream, the
// log's verification, a rebuild, which swaps the read model). Then two
// request lines that are none of its routes.
func fuzzRoutes(tb testing.TB) []fuzzRoute {
	streams := map[string]bool{}
	for _, sd := range []grpc.ServiceDesc{
		ordersv1.OrderCommandService_ServiceDesc, ordersv1.OrderQueryService_ServiceDesc,
		ordersv1.OrderAuditService_ServiceDesc, ordersv1.OrderAdminService_ServiceDesc,
		ordersv1.PaymentAdminService_ServiceDesc, ordersv1.DeadlineAdminService_ServiceDesc,
	} {
		for _, st := range sd.Streams {
			streams[sd.ServiceName+"."+st.StreamName] = true
		}
	}
	var out []fuzzRoute
	for _, r := range httpRules(tb) {
		if !streams[r.selector] {
			out = append(out, fuzzRoute{strings.ToUpper(r.method), r.path})
		}
	}
	slices.SortFunc(out, func(a, b fuzzRoute) int {
		return cmp.Or(strings.Compare(a.path, b.path), strings.Compare(a.method, b.method))
	})
	return append(out, fuzzRoute{"PUT", "/v1/orders"}, fuzzRoute{"GET", "/v1/{x}"})
}

// routeIndex is the index of method and path in routes, for a seed.
func routeIndex(tb testing.TB, routes []fuzzRoute, method, path string) uint8 {
	i := slices.Index(routes, fuzzRoute{method, path})
	if i < 0 {
		tb.Fatalf("%s %s is not a route the fuzz test sends", method, path)
	}
	return uint8(i)
}

// pathVariable is a path template's variable, as the OpenAPI document
// spells it.
var pathVariable = regexp.MustCompile(`\{[^}]*\}`)

// fuzzHeaders are the request headers whose values the gateway reads.
var fuzzHeaders = []string{"X-Min-Position", "Idempotency-Key", "If-Match", "Grpc-Timeout", "Last-Event-ID", "Content-Type", "X-Max-Wait", "Accept"}

// FuzzGatewayRefusesBadInputClearly sends the gateway whatever a client
// could: any route, path segment, query string, body and value of a header
// it reads. Bad input must get a clear refusal (a 4xx, or 501 for a service
// this node does not serve) in grpc-gateway's status JSON, never a 5xx nor
// internal detail, and the gateway must keep answering.
func FuzzGatewayRefusesBadInputClearly(f *testing.F) {
	routes := fuzzRoutes(f)
	at := func(method, path string) uint8 { return routeIndex(f, routes, method, path) }
	f.Add(at("POST", "/v1/orders"), "", "", `{"customerId":"c","currency":"EUR"}`, uint8(0), "")
	f.Add(at("GET", "/v1/orders/{orderId}"), "no-such-order", "consistency.minPosition=1&consistency.maxWait=0.01s", "", uint8(0), "18446744073709551615")
	f.Add(at("GET", "/v1/orders"), "", "pageSize=-1&status=ORDER_STATUS_NOPE&customerId=%ff", "", uint8(3), "1H")
	f.Add(at("POST", "/v1/orders/{orderId}/items"), "a%2Fb", "", `{"sku":"A","quantity":"1e9","unitPrice":"NaN"}`, uint8(2), `W/"x"`)
	f.Add(at("POST", "/v1/orders/{orderId}/payments"), "o", "", `{"amount":{"minor":"-1","currency":"eur"}}`, uint8(1), strings.Repeat("k", 300))
	f.Add(at("PATCH", "/v1/orders/{orderId}/items/{sku}"), "o\x00", "sku=%zz", "[]", uint8(5), "text/plain")
	f.Add(at("GET", "/v1/customers/{customerId}/summary"), "c|d", "", "", uint8(4), "-3")
	f.Add(at("POST", "/v1/orders/{orderId}:place"), "o", "", `{"expectedRevision":"99999999999999999999"}`, uint8(6), "0.5s")
	e := start(f)
	f.Fuzz(func(t *testing.T, route uint8, segment, query, body string, header uint8, value string) {
		r := routes[int(route)%len(routes)]
		path := pathVariable.ReplaceAllLiteralString(r.path, url.PathEscape(segment))
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
