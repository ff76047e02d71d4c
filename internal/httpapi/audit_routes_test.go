package httpapi_test

import (
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/chain"
)

// TestOrderStateOverREST reads an order's state at each point of its
// history through GET /v1/orders/{id}/state, by version and by time, and
// the statuses of bad requests.
func TestOrderStateOverREST(t *testing.T) {
	e := start(t)
	id := expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200).str("order", "orderId")
	o := "/v1/orders/" + id
	expect(t, e.do(t, "POST", o+"/items", `{"sku":"PEN-1","quantity":"3","unitPrice":"200"}`, "Idempotency-Key", key()), 200)
	expect(t, e.do(t, "POST", o+":place", `{}`, "Idempotency-Key", key()), 200)
	evs := e.loadEvents(t, id)
	if len(evs) != 3 {
		t.Fatalf("%d events", len(evs))
	}

	want := []struct {
		status, lastType string
		lines            int
		total            string
	}{
		{"ORDER_STATUS_DRAFT", "OrderCreated", 1, "2500"},
		{"ORDER_STATUS_DRAFT", "ItemAdded", 2, "3100"},
		{"ORDER_STATUS_PLACED", "OrderPlaced", 2, "3100"},
	}
	check := func(t *testing.T, r reply, i int) {
		t.Helper()
		w := want[i]
		lines, _ := r.get("order", "lines").([]any)
		if r.str("order", "orderId") != id || r.str("order", "status") != w.status || len(lines) != w.lines || r.str("order", "total") != w.total {
			t.Fatalf("state after event %d: %s", i+1, r.raw)
		}
		if r.str("lastEvent", "type") != w.lastType || r.get("lastEvent", "version") != float64(i+1) ||
			r.str("lastEvent", "position") != formatUint(evs[i].Position) || r.str("order", "revision") != formatUint(evs[i].Position) || r.get("order", "version") != float64(i+1) {
			t.Fatalf("last event of the state after event %d: %s", i+1, r.raw)
		}
	}
	for i, ev := range evs {
		check(t, expect(t, e.do(t, "GET", o+"/state?version="+formatUint(uint64(i+1)), ""), 200), i)
		at := url.QueryEscape(ev.Meta.OccurredAt.Format(time.RFC3339Nano))
		check(t, expect(t, e.do(t, "GET", o+"/state?time="+at, ""), 200), i)
	}

	before := url.QueryEscape(evs[0].Meta.OccurredAt.Add(-time.Second).Format(time.RFC3339Nano))
	for _, tc := range []struct {
		name, path string
		want       int
		grpcCode   float64
	}{
		{"unknown order", "/v1/orders/no-such-order/state?version=1", 404, 5},
		{"time before creation", o + "/state?time=" + before, 404, 5},
		{"version beyond the end", o + "/state?version=4", 400, 11},
		{"version zero", o + "/state?version=0", 400, 3},
		{"no point", o + "/state", 400, 3},
		{"malformed version", o + "/state?version=two", 400, 3},
		{"negative version", o + "/state?version=-1", 400, 3},
		{"malformed time", o + "/state?time=yesterday", 400, 3},
		{"invalid order id", "/v1/orders/a%20b/state?version=1", 400, 3},
		{"unknown parameter", o + "/state?version=1&revision=1", 400, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(t, "GET", tc.path, "")
			if r.code != tc.want {
				t.Fatalf("HTTP %d, want %d: %.300s", r.code, tc.want, r.raw)
			}
			assertStatusJSON(t, r)
			if r.get("code") != tc.grpcCode {
				t.Fatalf("gRPC code %v, want %v: %.300s", r.get("code"), tc.grpcCode, r.raw)
			}
		})
	}
}

// TestVerifyOrderOverREST checks POST /v1/orders/{id}:verify on an intact
// order, on one holding an event forged behind the service's back, and the
// statuses of bad requests.
func TestVerifyOrderOverREST(t *testing.T) {
	e := start(t)
	intact := expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200).str("order", "orderId")
	forged := expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200).str("order", "orderId")
	expect(t, e.do(t, "POST", "/v1/orders/"+forged+":place", `{}`, "Idempotency-Key", key()), 200)

	// An event appended straight to the log with a hash that does not
	// match its content.
	evs := e.loadEvents(t, forged)
	last := evs[len(evs)-1]
	res, err := e.store.Append(t.Context(), forged, last.Version, []eventstore.EventData{{Type: "OrderCancelled",
		Meta: eventstore.Metadata{OccurredAt: time.Now().UTC(), PrevHash: last.Meta.Hash, Hash: chain.Zero}}})
	if err != nil {
		t.Fatal(err)
	}

	ok := expect(t, e.do(t, "POST", "/v1/orders/"+intact+":verify", `{}`), 200)
	if ok.str("orderId") != intact || ok.get("ok") != true || ok.get("eventsChecked") != float64(1) || ok.get("firstBreak") != nil {
		t.Fatalf("intact order: %s", ok.raw)
	}
	bad := expect(t, e.do(t, "POST", "/v1/orders/"+forged+":verify", `{}`), 200)
	if bad.get("ok") != false || bad.get("eventsChecked") != float64(3) || bad.str("firstBreak", "position") != formatUint(res.Position) ||
		bad.str("firstBreak", "kind") != "CHAIN_BREAK_KIND_ALTERED" || bad.get("firstBreak", "version") != float64(3) {
		t.Fatalf("forged order: %s", bad.raw)
	}

	for _, tc := range []struct {
		name, path, body string
		want             int
		grpcCode         float64
	}{
		{"unknown order", "/v1/orders/no-such-order:verify", `{}`, 404, 5},
		{"invalid order id", "/v1/orders/a%20b:verify", `{}`, 400, 3},
		{"unknown field", "/v1/orders/" + intact + ":verify", `{"deep":true}`, 400, 3},
		{"malformed body", "/v1/orders/" + intact + ":verify", `{`, 400, 3},
		{"query parameter", "/v1/orders/" + intact + ":verify?orderId=x", `{}`, 400, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(t, "POST", tc.path, tc.body)
			if r.code != tc.want {
				t.Fatalf("HTTP %d, want %d: %.300s", r.code, tc.want, r.raw)
			}
			assertStatusJSON(t, r)
			if r.get("code") != tc.grpcCode {
				t.Fatalf("gRPC code %v, want %v: %.300s", r.get("code"), tc.grpcCode, r.raw)
			}
		})
	}
}

func formatUint(n uint64) string { return strconv.FormatUint(n, 10) }
