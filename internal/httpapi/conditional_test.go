package httpapi_test

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A GET of an order evaluates its preconditions against the ETag (RFC
// 9110, section 13): If-None-Match naming it (weak comparison, or *) is
// 304 without a body, naming another revision is 200; If-Match naming
// another revision is 412, naming it 200. Both were ignored: every GET
// answered 200 with the body.
func TestConditionalGetOfAnOrder(t *testing.T) {
	e := start(t)
	c := expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200)
	o := "/v1/orders/" + c.str("order", "orderId")
	g := expect(t, e.do(t, "GET", o, "", "X-Min-Position", c.str("position")), 200)
	etag := g.header.Get("ETag")
	if etag != strconv.Quote(g.str("order", "revision")) {
		t.Fatalf("ETag %q for revision %s", etag, g.str("order", "revision"))
	}
	for _, inm := range []string{etag, "W/" + etag, `"99", ` + etag, "*"} {
		r := e.do(t, "GET", o, "", "If-None-Match", inm)
		if r.code != http.StatusNotModified || r.raw != "" || r.header.Get("ETag") != etag {
			t.Errorf("GET with If-None-Match %s: HTTP %d ETag %q body %q; want 304, the ETag and no body", inm, r.code, r.header.Get("ETag"), r.raw)
		}
	}
	for _, h := range [][]string{{"If-None-Match", `"99"`}, {"If-Match", etag}} {
		if r := e.do(t, "GET", o, "", h...); r.code != http.StatusOK || r.str("order", "revision") != g.str("order", "revision") {
			t.Errorf("GET with %s %s: HTTP %d %.200s; want 200 and the order", h[0], h[1], r.code, r.raw)
		}
	}
	// ABORTED, as a command's stale If-Match: the order changed, read it
	// again. It said FAILED_PRECONDITION, which in this API says that
	// the same request will not succeed.
	if r := e.do(t, "GET", o, "", "If-Match", `"7"`); r.code != http.StatusPreconditionFailed || r.get("code") != float64(codes.Aborted) {
		t.Errorf(`GET with If-Match "7" of an order whose ETag is %s: HTTP %d, code %v; want 412 and ABORTED`, etag, r.code, r.get("code"))
	}
	if r := e.do(t, "HEAD", o, "", "If-None-Match", etag); r.code != http.StatusNotModified {
		t.Errorf("HEAD with If-None-Match %s: HTTP %d; want 304", etag, r.code)
	}
}

// If-None-Match on a command is not ignored: * is 412, as the order a
// command acts on exists, and the command does nothing (a PUT overwrote
// the address), but for a create, which creates only what is absent;
// entity tags are 400, since the revision an order will have is known
// only once the command ran.
func TestIfNoneMatchOnACommand(t *testing.T) {
	e := start(t)
	c := expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200)
	o := "/v1/orders/" + c.str("order", "orderId")
	put := `{"shippingAddress":{"name":"Eve","line1":"2 Other St","city":"Paris","country":"FR"}}`
	expect(t, e.do(t, "PUT", o+"/shipping-address", put, "Idempotency-Key", key(), "If-None-Match", "*"), 412)
	// A create is "create only if absent" by itself.
	expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key(), "If-None-Match", "*"), 200)
	expect(t, e.do(t, "PUT", o+"/shipping-address", put, "Idempotency-Key", key(), "If-None-Match", `"1"`), 400)
	g := expect(t, e.do(t, "GET", o, "", "X-Min-Position", c.str("position")), 200)
	if g.str("order", "revision") != c.str("order", "revision") {
		t.Fatalf("the order after refused PUTs: revision %s, want %s", g.str("order", "revision"), c.str("order", "revision"))
	}
}

// If-Match uses strong comparison (RFC 9110, section 13.1.1), so a weak tag
// never matches: 412 on a GET and on a command, and the command does
// nothing. Both answered 400, as if the header were malformed.
func TestWeakIfMatchIsAFailedPrecondition(t *testing.T) {
	e := start(t)
	c := expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200)
	o := "/v1/orders/" + c.str("order", "orderId")
	g := expect(t, e.do(t, "GET", o, "", "X-Min-Position", c.str("position")), 200)
	weak := "W/" + g.header.Get("ETag")
	expect(t, e.do(t, "GET", o, "", "If-Match", weak), 412)
	put := `{"shippingAddress":{"name":"Eve","line1":"2 Other St","city":"Paris","country":"FR"}}`
	expect(t, e.do(t, "PUT", o+"/shipping-address", put, "Idempotency-Key", key(), "If-Match", weak), 412)
	expect(t, e.do(t, "PUT", o+"/shipping-address", put, "Idempotency-Key", key(), "If-Match", "W/*"), 400)
	if g2 := expect(t, e.do(t, "GET", o, ""), 200); g2.str("order", "revision") != g.str("order", "revision") {
		t.Fatalf("the order after a refused PUT: revision %s, want %s", g2.str("order", "revision"), g.str("order", "revision"))
	}
}

// A command's precondition that fails whatever the order's state (a weak
// If-Match, If-None-Match: *) is judged once the request is routed and the
// order found: RFC 9110 (section 13.2.1) has a server ignore the
// preconditions of a request it would answer with another status than
// 2xx or 412 without them, so a path no route serves is 404, a method the
// route does not take 405 (with Allow), and a command on an order that
// does not exist 404, as without the condition. All were 412.
func TestFailedPreconditionAfterRouting(t *testing.T) {
	e := start(t)
	c := expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200)
	o := "/v1/orders/" + c.str("order", "orderId")
	put := `{"shippingAddress":{"name":"Eve","line1":"2 Other St","city":"Paris","country":"FR"}}`
	for _, cond := range [][]string{{"If-Match", `W/"1"`}, {"If-None-Match", "*"}} {
		for _, c := range []struct {
			method, path string
			want         int
		}{
			{"PUT", "/v1/no-such-route", http.StatusNotFound},
			{"POST", o + "/no-such-collection", http.StatusNotFound},
			{"PUT", o + "/items", http.StatusMethodNotAllowed},
			{"PATCH", o + "/shipping-address", http.StatusMethodNotAllowed},
			{"PUT", "/v1/orders/no-such-order/shipping-address", http.StatusNotFound},
			{"PUT", o + "/shipping-address", http.StatusPreconditionFailed},
		} {
			r := e.do(t, c.method, c.path, put, "Idempotency-Key", key(), cond[0], cond[1])
			if r.code != c.want {
				t.Errorf("%s %s with %s: %s: HTTP %d, want %d", c.method, c.path, cond[0], cond[1], r.code, c.want)
			}
			if c.want == http.StatusMethodNotAllowed && r.header.Get("Allow") == "" {
				t.Errorf("%s %s with %s: %s: 405 without Allow", c.method, c.path, cond[0], cond[1])
			}
		}
	}
	if g := expect(t, e.do(t, "GET", o, ""), 200); g.str("order", "revision") != c.str("order", "revision") {
		t.Fatalf("the order after refused PUTs: revision %s, want %s", g.str("order", "revision"), c.str("order", "revision"))
	}
}

// callCounter counts the VerifyLog calls its server sees.
type callCounter struct {
	ordersv1.UnimplementedOrderAuditServiceServer
}

func (callCounter) VerifyLog(*ordersv1.VerifyLogRequest, grpc.ServerStreamingServer[ordersv1.VerifyLogResponse]) error {
	return status.Error(codes.Internal, "the call was made")
}

// A stream route's request whose precondition fails is answered 412 and
// makes no call: the server saw each such request as a VerifyLog (or a
// rebuild) opened and cancelled, through its interceptors, stream limit
// and RPC log.
func TestFailedPreconditionOfAStreamMakesNoCall(t *testing.T) {
	var opened atomic.Int32
	gs := grpc.NewServer(grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		opened.Add(1)
		return h(srv, ss)
	}))
	ordersv1.RegisterOrderAuditServiceServer(gs, callCounter{})
	base, c := gatewayOver(t, serve(t, gs))
	for _, cond := range [][]string{{"If-None-Match", "*"}, {"If-Match", `W/"1"`}} {
		if r := do(t, c, "POST", base+"/v1/events:verify", `{}`, cond[0], cond[1]); r.code != http.StatusPreconditionFailed {
			t.Errorf("verify with %s: %s: HTTP %d, want 412", cond[0], cond[1], r.code)
		}
	}
	// A call made is seen by the server before the gateway's answer
	// could end it: this one, made without a condition, is counted too.
	if r := do(t, c, "POST", base+"/v1/events:verify", `{}`); r.code == http.StatusPreconditionFailed {
		t.Fatalf("verify without a condition: HTTP %d", r.code)
	}
	if n := opened.Load(); n != 1 {
		t.Errorf("the server saw %d VerifyLog calls for two refused requests and one made, want 1", n)
	}
}

// A retry of a command that landed, sent again under its Idempotency-Key
// with a precondition that fails whatever the order's state, is 412, as
// before the condition went into the command: it was 422 (the request
// digest held the revision the condition is carried as, so the retry read
// as another request under the key).
func TestRetryWithAFailedPreconditionIs412(t *testing.T) {
	e := start(t)
	c := expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200)
	o := "/v1/orders/" + c.str("order", "orderId")
	put := `{"shippingAddress":{"name":"Eve","line1":"2 Other St","city":"Paris","country":"FR"}}`
	k := key()
	expect(t, e.do(t, "PUT", o+"/shipping-address", put, "Idempotency-Key", k), 200)
	for _, cond := range [][]string{{"If-None-Match", "*"}, {"If-Match", `W/"2"`}} {
		if r := e.do(t, "PUT", o+"/shipping-address", put, "Idempotency-Key", k, cond[0], cond[1]); r.code != http.StatusPreconditionFailed {
			t.Errorf("the retry with %s: %s: HTTP %d, want 412", cond[0], cond[1], r.code)
		}
	}
}

// No answer of the API may be stored by a cache: an order's answers carry
// its customer's personal data, which a kept copy would hold past an
// erasure, and a kept 404 would be answered once the order exists. Only
// the streams said so; a GET of an order or of its history, a list, a 404
// said nothing, and a browser or a proxy could keep them.
func TestAnswersAreNotStored(t *testing.T) {
	e := start(t)
	c := expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200)
	o := "/v1/orders/" + c.str("order", "orderId")
	pos := c.str("position")
	answers := map[string]reply{"POST /v1/orders": c}
	for _, path := range []string{o, o + "/history", "/v1/orders?customerId=" + c.str("order", "customerId")} {
		answers["GET "+path] = expect(t, e.do(t, "GET", path, "", "X-Min-Position", pos), 200)
	}
	answers["HEAD "+o] = expect(t, e.do(t, "HEAD", o, ""), 200)
	answers["GET /v1/orders/not-yet"] = expect(t, e.do(t, "GET", "/v1/orders/not-yet", ""), 404)
	answers["GET "+o+" If-None-Match"] = expect(t, e.do(t, "GET", o, "", "If-None-Match", answers["GET "+o].header.Get("ETag")), 304)
	for what, r := range answers {
		if got := r.header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store", what, got)
		}
	}
}

// A stale If-Match's 412 says where the order is, as the gRPC answer does
// (an ErrorInfo REVISION_CHANGED): the client reads the order with
// X-Min-Position at that position and decides again.
func TestStaleIfMatchSaysWhereTheOrderIs(t *testing.T) {
	e := start(t)
	c := expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200)
	o := "/v1/orders/" + c.str("order", "orderId")
	r := expect(t, e.do(t, "POST", o+"/items", `{"sku":"Z","quantity":"1","unitPrice":"1"}`, "Idempotency-Key", key(), "If-Match", `"7"`), 412)
	if r.str("details", "0", "reason") != "REVISION_CHANGED" || r.str("details", "0", "metadata", "revision") != c.str("order", "revision") ||
		r.str("details", "0", "metadata", "position") != c.str("position") {
		t.Fatalf("stale If-Match: %.500s; want REVISION_CHANGED at revision %s, position %s", r.raw, c.str("order", "revision"), c.str("position"))
	}
}
