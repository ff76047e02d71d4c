package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
)

// A query parameter Go's URL parser cannot read (a malformed escape, a ';'
// separator) is 400 on the newline-delimited JSON watch (grpc-gateway's
// ParseForm) and on the Server-Sent Events watch. That one read
// r.URL.Query(), which drops such a pair without a word: the filter was
// ignored and the watch followed every order.
func TestSSEWatchMalformedQueryIsRefused(t *testing.T) {
	e := start(t)
	for _, q := range []string{"customerId=cust%ZZa", "customerId=a;b"} {
		path := "/v1/orders:watch?" + q
		ndCode, _, ndBody := openGet(t, e, path)
		sseCode, sseH, _ := openGet(t, e, path, "Accept", "text/event-stream")
		if ndCode != http.StatusBadRequest {
			t.Errorf("NDJSON watch %s: HTTP %d %s, want 400", path, ndCode, ndBody)
		}
		if sseCode != http.StatusBadRequest {
			t.Errorf("SSE watch %s: HTTP %d (%s), want 400 as the NDJSON watch answers (%d): the customerId filter is silently dropped", path, sseCode, sseH.Get("Content-Type"), ndCode)
		}
	}
}

// The published contract (openapi.json) lists Last-Event-ID on the watch
// operations, "fills fromPosition", whatever the Accept. Only the
// Server-Sent Events branch read it: the newline-delimited JSON watch
// ignored it and started from the current state, so a client resuming that
// way got no backlog of the changes it missed (and a list watch started
// "now", losing them).
func TestNDJSONWatchHonoursLastEventID(t *testing.T) {
	e := start(t)
	c := e.draft(t, "nd-resume", "")
	id := c.GetOrder().GetOrderId()
	last := e.addItems(t, id, 0, 2)
	code, _, line := openGet(t, e, "/v1/orders/"+id+":watch",
		"Last-Event-ID", strconv.FormatUint(c.GetPosition(), 10), "X-Min-Position", strconv.FormatUint(last, 10))
	if code != http.StatusOK {
		t.Fatalf("HTTP %d: %s", code, line)
	}
	var m struct {
		Result struct {
			Position  string `json:"position"`
			EventType string `json:"eventType"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatal(err)
	}
	want := positionsAfter(t, e, id, c.GetPosition())
	if m.Result.EventType != "ItemAdded" || m.Result.Position != strconv.FormatUint(want[0], 10) {
		t.Errorf("NDJSON watch with Last-Event-ID %d: first line %s; want the first change after it (ItemAdded at %d), not the current state", c.GetPosition(), line, want[0])
	}
}

// Last-Event-ID fills a watch's from_position and nothing else: a
// malformed one is refused on the newline-delimited JSON watch (400), as
// on the Server-Sent Events branch, and a route without a watch's
// from_position does not read it.
func TestLastEventIDIsReadByWatchesOnly(t *testing.T) {
	e := start(t)
	c := e.draft(t, "nd-bad-resume", "")
	id := c.GetOrder().GetOrderId()
	if code, _, body := openGet(t, e, "/v1/orders/"+id+":watch", "Last-Event-ID", "x"); code != http.StatusBadRequest {
		t.Errorf("NDJSON watch with Last-Event-ID x: %d %s, want 400", code, body)
	}
	if code, _, body := openGet(t, e, "/v1/orders/"+id, "Last-Event-ID", "x", "X-Min-Position", strconv.FormatUint(c.GetPosition(), 10)); code != http.StatusOK {
		t.Errorf("GET of the order with Last-Event-ID x: %d %s, want 200", code, body)
	}
}
