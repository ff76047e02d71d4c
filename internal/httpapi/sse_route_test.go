package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/orderstream/orderstream/internal/httpapi"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
)

// The gateway labels each request's HTTP metrics (and names its span)
// with its route template, not its path (routeTelemetry). A watch asked
// for as Server-Sent Events is served beside grpc-gateway's mux and got
// no route label: its metrics and span carried no http.route, unlike the
// same watch as newline-delimited JSON.
func TestSSEWatchIsLabelledWithItsRoute(t *testing.T) {
	e := start(t)
	h, err := httpapi.New(t.Context(), e.conn, httpapi.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	labels := make(chan []attribute.KeyValue, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l := &otelhttp.Labeler{}
		h.ServeHTTP(w, r.WithContext(otelhttp.ContextWithLabeler(r.Context(), l)))
		labels <- l.Get()
	}))
	t.Cleanup(srv.Close)
	// An order the service does not have (404), and a query naming
	// another order than the path (400, refused before the call).
	for path, code := range map[string]int{"/v1/orders/no-such-order:watch": http.StatusNotFound, "/v1/orders/a:watch?orderId=b": http.StatusBadRequest} {
		for _, accept := range []string{"application/x-ndjson", "text/event-stream"} {
			r := do(t, srv.Client(), "GET", srv.URL+path, "", "Accept", accept)
			if r.code != code {
				t.Fatalf("%s %s: HTTP %d %s, want %d", accept, path, r.code, r.raw, code)
			}
			var route string
			for _, kv := range <-labels {
				if kv.Key == semconv.HTTPRouteKey {
					route = kv.Value.AsString()
				}
			}
			if route != "/v1/orders/{order_id}:watch" {
				t.Errorf("Accept %s, %s: http.route label %q, want /v1/orders/{order_id}:watch", accept, path, route)
			}
		}
	}
}
