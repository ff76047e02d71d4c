package app_test

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// A REST stream answers its status line and headers as soon as it has
// started, not with its first message: a watch resumed from the order's
// last change and a follow of a quiet log send none until the next
// change, and a client or proxy waiting for the headers gave up. Before,
// neither answered anything until then.
func TestRESTStreamsAnswerTheirHeadersAtOnce(t *testing.T) {
	r := startRunning(t, map[string]string{"ROLES": "command,query,audit,gateway"})
	base := "http://" + r.addrs.HTTP
	if code, body := doWithHeaders(t, "POST", base+"/v1/orders", `{"requestId":"h1","orderId":"h1","customerId":"c","currency":"EUR"}`); code != http.StatusOK {
		t.Fatalf("create: %d %s", code, body)
	}
	for _, url := range []string{
		base + "/v1/orders/h1:watch?fromPosition=1",
		base + "/v1/events?follow=true&fromPosition=2",
	} {
		// Bounds the wait for the headers; nothing comes before it
		// unless the stream answers before its first message.
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Fatalf("GET %s: no headers before its first message: %v", url, err)
		}
		if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/x-ndjson" {
			t.Errorf("GET %s: %d, Content-Type %q; want 200 and newline-delimited JSON", url, res.StatusCode, res.Header.Get("Content-Type"))
		}
		_ = res.Body.Close()
		cancel()
	}
}
