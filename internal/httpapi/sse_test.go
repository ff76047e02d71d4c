package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/httpapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
)

// sseEvent is one Server-Sent Event, or a comment line (heartbeat).
type sseEvent struct {
	id, event, data string
	comment         bool
}

// sseStream reads events from a text/event-stream answer.
type sseStream struct {
	res    *http.Response
	events chan sseEvent
}

func openSSE(t *testing.T, e *env, path string, headers ...string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The path goes as written: Go's client would escape again one whose
	// raw form holds a character such as '|', turning its %2F into '/'.
	req.URL.Opaque, _, _ = strings.Cut(path, "?")
	req.Header.Set("Accept", "text/event-stream")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	s := &sseStream{res: res, events: make(chan sseEvent, 64)}
	t.Cleanup(func() {
		cancel()
		_ = res.Body.Close()
	})
	go func() {
		defer close(s.events)
		sc := bufio.NewScanner(res.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev != (sseEvent{}) {
					s.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"):
				s.events <- sseEvent{comment: true}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			}
		}
	}()
	return s
}

// next returns the next event that is not a comment.
func (s *sseStream) next(t *testing.T) sseEvent {
	t.Helper()
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				t.Fatal("event stream ended")
			}
			if !ev.comment {
				return ev
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no event within 10s")
		}
	}
}

// until reads events until one with id at or past last and returns the
// ids.
func (s *sseStream) until(t *testing.T, last uint64) []uint64 {
	t.Helper()
	var ids []uint64
	for len(ids) == 0 || ids[len(ids)-1] < last {
		ev := s.next(t)
		id, err := strconv.ParseUint(ev.id, 10, 64)
		if err != nil || ev.event != "" {
			t.Fatalf("event %+v", ev)
		}
		var m struct {
			Position string `json:"position"`
		}
		if err := json.Unmarshal([]byte(ev.data), &m); err != nil || m.Position != ev.id {
			t.Fatalf("data %s: %v", ev.data, err)
		}
		ids = append(ids, id)
	}
	return ids
}

func positionsAfter(t *testing.T, e *env, id string, after uint64) []uint64 {
	t.Helper()
	recs, err := e.store.Load(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, r := range recs {
		if r.Position > after {
			out = append(out, r.Position)
		}
	}
	return out
}

// draft creates a draft order of customer through the command service
// (under orderID, or the id its request id derives when empty).
func (e *env) draft(t *testing.T, customer, orderID string) *ordersv1.CreateOrderResponse {
	t.Helper()
	c, err := e.cmd.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: key(), OrderId: orderID, CustomerId: customer, Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *env) addItems(t *testing.T, id string, from, n int) (last uint64) {
	t.Helper()
	for i := from; i < from+n; i++ {
		r, err := e.cmd.AddItem(t.Context(), &ordersv1.AddItemRequest{RequestId: key(), OrderId: id, Sku: fmt.Sprintf("SKU-%d", i), Quantity: 1, UnitPrice: 1})
		if err != nil {
			t.Fatal(err)
		}
		last = r.GetPosition()
	}
	return last
}

// TestWatchOverSSE watches an order through the gateway as a browser's
// EventSource does: the current state, every change, heartbeats while
// idle, and a reconnection with Last-Event-ID that misses nothing and
// repeats nothing.
func TestWatchOverSSE(t *testing.T) {
	e := start(t, httpapi.WithHeartbeat(20*time.Millisecond))
	c := e.draft(t, "sse", "")
	id := c.GetOrder().GetOrderId()
	s := openSSE(t, e, "/v1/orders/"+id+":watch", "X-Min-Position", strconv.FormatUint(c.GetPosition(), 10))
	if s.res.StatusCode != http.StatusOK || s.res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("HTTP %d %s", s.res.StatusCode, s.res.Header.Get("Content-Type"))
	}
	first := s.next(t)
	var state struct {
		Order struct {
			OrderID string `json:"orderId"`
			Status  string `json:"status"`
		} `json:"order"`
	}
	if err := json.Unmarshal([]byte(first.data), &state); err != nil || state.Order.OrderID != id || state.Order.Status != "ORDER_STATUS_DRAFT" {
		t.Fatalf("first event %+v: %v", first, err)
	}
	// Idle: heartbeats only.
	select {
	case ev := <-s.events:
		if !ev.comment {
			t.Fatalf("idle stream sent %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no heartbeat")
	}
	last := e.addItems(t, id, 0, 3)
	got := s.until(t, last)
	start, _ := strconv.ParseUint(first.id, 10, 64)
	if want := positionsAfter(t, e, id, start); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	_ = s.res.Body.Close()

	last = e.addItems(t, id, 3, 2)
	again := openSSE(t, e, "/v1/orders/"+id+":watch", "Last-Event-ID", strconv.FormatUint(got[len(got)-1], 10))
	resumed := again.until(t, last)
	if want := positionsAfter(t, e, id, got[len(got)-1]); !slices.Equal(resumed, want) {
		t.Fatalf("resumed events %v, want %v", resumed, want)
	}
}

func TestWatchListOverSSE(t *testing.T) {
	e := start(t)
	s := openSSE(t, e, "/v1/orders:watch?customerId=sse-list&status=ORDER_STATUS_DRAFT")
	if ev := s.next(t); !strings.Contains(ev.data, `"order":null`) {
		t.Fatalf("first event %+v", ev)
	}
	c := e.draft(t, "sse-list", "")
	if got := s.until(t, c.GetPosition()); !slices.Equal(got, []uint64{c.GetPosition()}) {
		t.Fatalf("events %v, want [%d]", got, c.GetPosition())
	}
}

// A list watch on an empty log starts after position 0, its first event's
// id. An EventSource that reconnects with Last-Event-ID 0 must get what
// changed meanwhile, not start again from "now".
func TestWatchListOverSSEResumesAfterPositionZero(t *testing.T) {
	e := start(t)
	s := openSSE(t, e, "/v1/orders:watch?customerId=sse-zero")
	if ev := s.next(t); ev.id != "0" || !strings.Contains(ev.data, `"order":null`) {
		t.Fatalf("first event on an empty log %+v, want id 0 and no order", ev)
	}
	_ = s.res.Body.Close()
	missed := e.draft(t, "sse-zero", "")
	again := openSSE(t, e, "/v1/orders:watch?customerId=sse-zero", "Last-Event-ID", "0")
	later := e.draft(t, "sse-zero", "")
	if got, want := again.until(t, later.GetPosition()), []uint64{missed.GetPosition(), later.GetPosition()}; !slices.Equal(got, want) {
		t.Fatalf("resumed after 0: events %v, want %v", got, want)
	}
}

func TestWatchSSEErrors(t *testing.T) {
	e := start(t)
	// A watch opened instead of refused would never end: cut it.
	bounded := *e.http
	bounded.Timeout = 10 * time.Second
	for _, tc := range []struct {
		path, body string
		headers    []string
		code       int
	}{
		{"/v1/orders/no-such-order:watch", "", nil, http.StatusNotFound},
		{"/v1/orders/x:watch?fromPosition=abc", "", nil, http.StatusBadRequest},
		{"/v1/orders/x:watch?colour=red", "", nil, http.StatusBadRequest},
		{"/v1/orders/x:watch", "", []string{"Last-Event-ID", "-1"}, http.StatusBadRequest},
		{"/v1/orders:watch?status=NO_SUCH_STATUS", "", nil, http.StatusBadRequest},
		// The gateway's own checks, as on the newline-delimited watch.
		{"/v1/orders:watch", `{"customerId":"c"}`, nil, http.StatusBadRequest},
		{"/v1/orders/x:watch", "", []string{"Grpc-Timeout", "soon"}, http.StatusBadRequest},
		{"/v1/orders:watch", "", []string{"Grpc-Timeout", "soon"}, http.StatusBadRequest},
	} {
		r := do(t, &bounded, http.MethodGet, e.base+tc.path, tc.body, append([]string{"Accept", "text/event-stream"}, tc.headers...)...)
		if r.code != tc.code || r.header.Get("Content-Type") != "application/json" || r.str("message") == "" {
			t.Errorf("%s %v: HTTP %d %s, want %d with status JSON", tc.path, tc.headers, r.code, r.raw, tc.code)
		}
	}
}

// TestWatchSSEEndsAtItsGrpcTimeout checks that Grpc-Timeout bounds a
// Server-Sent Events watch as it bounds any call through the gateway: the
// stream ends with an error event saying DEADLINE_EXCEEDED.
func TestWatchSSEEndsAtItsGrpcTimeout(t *testing.T) {
	e := start(t)
	c := expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200)
	s := openSSE(t, e, "/v1/orders/"+c.str("order", "orderId")+":watch", "Grpc-Timeout", "300m", "X-Min-Position", c.str("position"))
	if s.res.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d", s.res.StatusCode)
	}
	if ev := s.next(t); ev.event != "" {
		t.Fatalf("first event %+v, want the order's state", ev)
	}
	ev := s.next(t)
	var st struct {
		Code int `json:"code"`
	}
	if err := json.Unmarshal([]byte(ev.data), &st); err != nil || ev.event != "error" || st.Code != int(codes.DeadlineExceeded) {
		t.Fatalf("event %+v, want an error event with code %d", ev, codes.DeadlineExceeded)
	}
}

// watchedOrder is the order id of a watch event.
func watchedOrder(t *testing.T, ev sseEvent) string {
	t.Helper()
	var m struct {
		Order struct {
			OrderID string `json:"orderId"`
		} `json:"order"`
	}
	if err := json.Unmarshal([]byte(ev.data), &m); err != nil {
		t.Fatalf("event %+v: %v", ev, err)
	}
	return m.Order.OrderID
}

// A header value gRPC metadata cannot carry (anything but printable ASCII)
// is dropped from a Server-Sent Events watch, value by value, as
// grpc-gateway drops it on every other route: the watch answers as it would
// without that value and the other headers still reach the server, instead
// of grpc-go refusing the whole call as INTERNAL (a 500).
func TestWatchSSEDropsHeaderValuesGRPCCannotCarry(t *testing.T) {
	e := start(t)
	c := e.draft(t, "sse-ascii", "")
	id := c.GetOrder().GetOrderId()

	r := do(t, e.http, http.MethodGet, e.base+"/v1/orders/no-such-order:watch", "",
		"Accept", "text/event-stream", "X-Correlation-Id", "sse-ascii", "X-Actor", "zoë",
		"X-Causation-Id", "cause-1", "X-Causation-Id", "cause\t2")
	if r.code != http.StatusNotFound {
		t.Fatalf("watch of a missing order with a non-ASCII header: HTTP %d %s, want 404 as without it", r.code, r.raw)
	}
	v, ok := e.seenMD.Load("sse-ascii")
	if !ok {
		t.Fatal("the server saw no watch with x-correlation-id sse-ascii")
	}
	md := v.(metadata.MD)
	if got := md.Get("x-causation-id"); !slices.Equal(got, []string{"cause-1"}) {
		t.Errorf("x-causation-id = %q, want only the printable value", got)
	}
	if got := md.Get("x-actor"); len(got) != 0 {
		t.Errorf("x-actor = %q, want it dropped", got)
	}

	s := openSSE(t, e, "/v1/orders/"+id+":watch", "X-Min-Position", strconv.FormatUint(c.GetPosition(), 10), "X-Correlation-Id", "réf-1")
	if s.res.StatusCode != http.StatusOK {
		t.Fatalf("watch with a non-ASCII header: HTTP %d, want 200", s.res.StatusCode)
	}
	if got := watchedOrder(t, s.next(t)); got != id {
		t.Fatalf("watched %q, want %q", got, id)
	}
}

// The order in the path is the one watched: a query parameter naming
// another order is refused over Server-Sent Events and newline-delimited
// JSON alike (it was ignored), and one naming the path's order is taken.
func TestWatchSSEPathWinsOverQuery(t *testing.T) {
	e := start(t)
	var ids []string
	var last uint64
	for range 2 {
		c := e.draft(t, "sse-path", "")
		ids, last = append(ids, c.GetOrder().GetOrderId()), c.GetPosition()
	}
	for _, param := range []string{"orderId", "order_id"} {
		path := "/v1/orders/" + ids[0] + ":watch?" + param + "=" + ids[1]
		s := openSSE(t, e, path, "X-Min-Position", strconv.FormatUint(last, 10))
		if s.res.StatusCode != http.StatusBadRequest {
			t.Errorf("%s over Server-Sent Events: HTTP %d, want 400", path, s.res.StatusCode)
		}
		path = "/v1/orders/" + ids[0] + ":watch?" + param + "=" + ids[0]
		s = openSSE(t, e, path, "X-Min-Position", strconv.FormatUint(last, 10))
		if s.res.StatusCode != http.StatusOK {
			t.Fatalf("%s: HTTP %d", path, s.res.StatusCode)
		}
		if got := watchedOrder(t, s.next(t)); got != ids[0] {
			t.Errorf("%s watched %q, want the order in the path, %q", path, got, ids[0])
		}
	}
}

// An order whose id holds '/' (sent as %2F) is watched as Server-Sent
// Events like any other. Before, the event-stream route matched on the
// decoded path, took the id's '/' for the path's and left the request to
// the gateway, which answered newline-delimited JSON.
//
// The route is matched on the path as the gateway routes it, as sent: an
// id sent as sse%2Fpipe|1 (curl leaves the '|' as it is) is one segment,
// though escaping the decoded path again would make it two.
func TestWatchOverSSEWithSlashInTheOrderID(t *testing.T) {
	e := start(t, httpapi.WithHeartbeat(20*time.Millisecond))
	for id, sent := range map[string]string{"sse/slash:1": url.PathEscape("sse/slash:1"), "sse/pipe|1": "sse%2Fpipe|1"} {
		c := e.draft(t, "sse", id)
		s := openSSE(t, e, "/v1/orders/"+sent+":watch", "X-Min-Position", strconv.FormatUint(c.GetPosition(), 10))
		if s.res.StatusCode != http.StatusOK || s.res.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("%s: HTTP %d %s", sent, s.res.StatusCode, s.res.Header.Get("Content-Type"))
		}
		var state struct {
			Order struct {
				OrderID string `json:"orderId"`
			} `json:"order"`
		}
		if ev := s.next(t); json.Unmarshal([]byte(ev.data), &state) != nil || state.Order.OrderID != id {
			t.Fatalf("%s: first event %+v; want the order %s", sent, ev, id)
		}
	}
}
