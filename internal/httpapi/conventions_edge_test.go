package httpapi_test

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// openGet sends a GET with headers (name, value pairs) and returns its
// status, headers and the first line of its body (a watch never ends; an
// error is one line of JSON), then cancels it.
func openGet(t *testing.T, e *env, path string, headers ...string) (int, http.Header, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	line, _ := bufio.NewReader(res.Body).ReadString('\n')
	return res.StatusCode, res.Header, line
}

// The ETag is documented for GET /v1/orders/{id} and the commands only. The
// newline-delimited JSON watches get one anyway, from their first message
// (setETag matched WatchOrderResponse and WatchOrdersResponse through the
// revisioned interface): on a resumed watch it was an old revision of the
// order, on the list watch the revision of whichever order came first.
// They carry none.
func TestNDJSONWatchCarriesNoETag(t *testing.T) {
	e := start(t)
	c := e.draft(t, "r5-etag", "")
	id := c.GetOrder().GetOrderId()
	last := e.addItems(t, id, 0, 2) // the order is now at revision 3
	code, h, line := openGet(t, e, "/v1/orders/"+id+":watch",
		"Last-Event-ID", strconv.FormatUint(c.GetPosition(), 10), "X-Min-Position", strconv.FormatUint(last, 10))
	if code != 200 {
		t.Fatalf("HTTP %d: %s", code, line)
	}
	if et := h.Get("ETag"); et != "" {
		t.Errorf("watch of order at revision 3 answered ETag %s (first line %s): an If-Match with it now fails 412", et, strings.TrimSpace(line))
	}
	code, h, line = openGet(t, e, "/v1/orders:watch?customerId=r5-etag", "X-Min-Position", strconv.FormatUint(last, 10))
	if code != 200 {
		t.Fatalf("HTTP %d: %s", code, line)
	}
	if et := h.Get("ETag"); et != "" {
		t.Errorf("list watch answered ETag %s, one order's revision for a collection", et)
	}
}

// codeQuery answers GetOrder with the status whose code is the order id.
type codeQuery struct {
	ordersv1.UnimplementedOrderQueryServiceServer
}

func (codeQuery) GetOrder(_ context.Context, req *ordersv1.GetOrderRequest) (*ordersv1.GetOrderResponse, error) {
	n, _ := strconv.Atoi(req.GetOrderId()[1:])
	return nil, status.Error(codes.Code(n), "secret /var/lib/orders internal text; retry")
}

// contendedCommands answers every CreateOrder ABORTED as lasting contention,
// which the service sends when its own retries on conflicts are used up.
type contendedCommands struct {
	ordersv1.UnimplementedOrderCommandServiceServer
}

func (contendedCommands) CreateOrder(context.Context, *ordersv1.CreateOrderRequest) (*ordersv1.CreateOrderResponse, error) {
	return nil, status.Error(codes.Aborted, "too many concurrent changes to the order; retry")
}

// Every gRPC code maps to the README's HTTP status; 500s never carry the
// service's text.
func TestStatusForEveryCode(t *testing.T) {
	gs := grpc.NewServer()
	ordersv1.RegisterOrderQueryServiceServer(gs, codeQuery{})
	base, c := gatewayOver(t, serve(t, gs))
	want := map[codes.Code]int{
		codes.Canceled: 499, codes.Unknown: 500, codes.InvalidArgument: 400, codes.DeadlineExceeded: 504,
		codes.NotFound: 404, codes.AlreadyExists: 409, codes.PermissionDenied: 403, codes.ResourceExhausted: 429,
		codes.FailedPrecondition: 400, codes.Aborted: 409, codes.OutOfRange: 400, codes.Unimplemented: 501,
		codes.Internal: 500, codes.Unavailable: 503, codes.DataLoss: 500, codes.Unauthenticated: 401,
		codes.Code(17): 500, codes.Code(42): 500,
	}
	for code, status := range want {
		r := do(t, c, "GET", base+"/v1/orders/c"+strconv.Itoa(int(code)), "")
		if r.code != status {
			t.Errorf("%v: HTTP %d, want %d: %s", code, r.code, status, r.raw)
		}
		if r.code == 500 && strings.Contains(r.raw, "secret") {
			t.Errorf("%v: HTTP 500 leaks the service's text: %s", code, r.raw)
		}
	}
}

// If-Match on a route without expected_revision is ignored (nothing was
// conditional), and an ABORTED from contention there is 409, as without
// it. It was answered 412, as if the precondition had failed.
func TestIgnoredIfMatchLeavesContentionAt409(t *testing.T) {
	gs := grpc.NewServer()
	ordersv1.RegisterOrderCommandServiceServer(gs, contendedCommands{})
	base, c := gatewayOver(t, serve(t, gs))
	body := `{"requestId":"r5","customerId":"c","currency":"EUR"}`
	plain := do(t, c, "POST", base+"/v1/orders", body)
	withIfMatch := do(t, c, "POST", base+"/v1/orders", body, "If-Match", `"1"`)
	if plain.code != 409 || withIfMatch.code != plain.code {
		t.Errorf("CreateOrder (no expected_revision) under contention: HTTP %d, with an ignored If-Match HTTP %d; want 409 both", plain.code, withIfMatch.code)
	}
}

// If-Match is compared as an entity tag (RFC 9110 strong comparison:
// identical opaque-tags). "01" is not the ETag "1" the gateway issued: it
// is refused, where it parsed to revision 1 and the change went through.
func TestIfMatchLeadingZeroIsNotTheETag(t *testing.T) {
	e := start(t)
	c := expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200)
	if c.header.Get("ETag") != `"1"` {
		t.Fatalf("ETag %s", c.header.Get("ETag"))
	}
	r := e.do(t, "POST", "/v1/orders/"+c.str("order", "orderId")+"/items", `{"sku":"Z","quantity":"1","unitPrice":"1"}`, "Idempotency-Key", key(), "If-Match", `"01"`)
	if r.code != 412 && r.code != 400 {
		t.Errorf(`If-Match "01" against ETag "1": HTTP %d, want 412 (or 400): %.200s`, r.code, r.raw)
	}
}
