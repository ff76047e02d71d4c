package httpapi_test

import (
	"net/http"
	"net/url"
	"strconv"
	"testing"
)

// An order id holding '%' is sent percent-encoded (%25). When the rest of
// the path is in Go's default encoding, net/url leaves RawPath empty and
// routePath gives the decoded path, which the Server-Sent Events watch
// decoded a second time: /v1/orders/p%2541:watch watched order "pA", not
// "p%41", as the newline-delimited watch of the same path does.
func TestSSEWatchDecodesTheOrderIDOnce(t *testing.T) {
	e := start(t)
	want := e.draft(t, "sse-pct", "p%41")
	other := e.draft(t, "sse-pct", "pA")
	pos := strconv.FormatUint(max(want.GetPosition(), other.GetPosition()), 10)
	sent := "/v1/orders/" + url.PathEscape("p%41") + ":watch" // /v1/orders/p%2541:watch

	code, _, line := openGet(t, e, sent, "X-Min-Position", pos)
	if code != http.StatusOK {
		t.Fatalf("NDJSON control: HTTP %d %s", code, line)
	}
	s := openSSE(t, e, sent, "X-Min-Position", pos)
	if s.res.StatusCode != http.StatusOK {
		t.Fatalf("SSE watch of %q (sent as %s): HTTP %d", "p%41", sent, s.res.StatusCode)
	}
	if got := watchedOrder(t, s.next(t)); got != "p%41" {
		t.Errorf("SSE watch sent as %s watched order %q, want %q (the newline-delimited watch of the same path watches %q)", sent, got, "p%41", "p%41")
	}
	// An id whose decoded form is no valid escape ("o%1") was handed to
	// the gateway, which answered newline-delimited JSON to an
	// EventSource.
	o := e.draft(t, "sse-pct", "o%1")
	s = openSSE(t, e, "/v1/orders/"+url.PathEscape("o%1")+":watch", "X-Min-Position", strconv.FormatUint(o.GetPosition(), 10))
	if ct := s.res.Header.Get("Content-Type"); s.res.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Errorf("SSE watch of %q: HTTP %d Content-Type %q, want 200 text/event-stream", "o%1", s.res.StatusCode, ct)
	}
}

// Accept: text/event-stream;q=0 refuses Server-Sent Events (RFC 9110,
// section 12.4.2), and a higher weight for newline-delimited JSON prefers
// it: both were answered with Server-Sent Events.
func TestSSERefusedByAcceptIsNotServed(t *testing.T) {
	e := start(t)
	c := e.draft(t, "sse-q0", "")
	code, h, line := openGet(t, e, "/v1/orders/"+c.GetOrder().GetOrderId()+":watch",
		"Accept", "text/event-stream;q=0, application/x-ndjson", "X-Min-Position", strconv.FormatUint(c.GetPosition(), 10))
	if code != http.StatusOK || h.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("Accept refusing text/event-stream (q=0): HTTP %d Content-Type %q, first line %q; want application/x-ndjson",
			code, h.Get("Content-Type"), line)
	}
	code, h, line = openGet(t, e, "/v1/orders/"+c.GetOrder().GetOrderId()+":watch",
		"Accept", "text/event-stream;q=0.5, application/x-ndjson;q=0.9", "X-Min-Position", strconv.FormatUint(c.GetPosition(), 10))
	if code != http.StatusOK || h.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("Accept preferring newline-delimited JSON: HTTP %d Content-Type %q, first line %q; want application/x-ndjson",
			code, h.Get("Content-Type"), line)
	}
	s := openSSE(t, e, "/v1/orders/"+c.GetOrder().GetOrderId()+":watch", "Accept", "application/x-ndjson;q=0.5, text/event-stream", "X-Min-Position", strconv.FormatUint(c.GetPosition(), 10))
	if ct := s.res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Accept preferring Server-Sent Events: Content-Type %q", ct)
	}
}

// A watch route's answer depends on Accept (newline-delimited JSON or
// Server-Sent Events), so it says so (Vary: Accept), whichever it gave: a
// cache would otherwise hand one to a client that asked for the other.
func TestWatchAnswersVaryByAccept(t *testing.T) {
	e := start(t)
	c := e.draft(t, "vary", "")
	path := "/v1/orders/" + c.GetOrder().GetOrderId() + ":watch"
	pos := strconv.FormatUint(c.GetPosition(), 10)
	if _, h, _ := openGet(t, e, path, "X-Min-Position", pos); h.Get("Vary") != "Accept" {
		t.Errorf("newline-delimited watch: Vary %q, want Accept", h.Get("Vary"))
	}
	if s := openSSE(t, e, path, "X-Min-Position", pos); s.res.Header.Get("Vary") != "Accept" {
		t.Errorf("Server-Sent Events watch: Vary %q, want Accept", s.res.Header.Get("Vary"))
	}
}

// A watch refused before it started (an order not there yet: 404, which a
// cache may keep without being told) tells caches not to keep it, asked
// for as Server-Sent Events as it did as newline-delimited JSON: kept, the
// 404 would be answered for the order once it exists.
func TestRefusedWatchIsNotStoredEitherWay(t *testing.T) {
	e := start(t)
	for _, accept := range []string{"application/x-ndjson", "text/event-stream"} {
		r := expect(t, e.do(t, "GET", "/v1/orders/not-yet:watch?fromPosition=0", "", "Accept", accept), http.StatusNotFound)
		if cc := r.header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("a watch refused (Accept: %s): Cache-Control %q, want no-store", accept, cc)
		}
	}
}
