package app

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// /readyz answers from the state the background evaluation keeps: it never
// runs a check itself, so a check stuck on a round trip to a NATS that is
// down does not hold the probe. While that state says NATS is down it
// answers 503 naming the check.
func TestReadyzAnswersFromKeptState(t *testing.T) {
	var calls atomic.Int32
	natsDown := Check{Name: "nats", Fn: func(ctx context.Context) error {
		calls.Add(1)
		<-ctx.Done() // a round trip that never comes back
		return errors.New("no round trip to the server")
	}}
	r := &readiness{checks: []Check{natsDown, {Name: "stream", Fn: func(context.Context) error { return nil }}}}
	probe := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		r.handler()(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec
	}
	if rec := probe(); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("before the first evaluation: %d %s", rec.Code, rec.Body)
	}
	if calls.Load() != 0 {
		t.Fatal("the handler ran a check")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // the evaluation's round trip ends at once
	if e := r.refresh(ctx); e.ready() || e.checks["nats"] == "ok" || e.checks["stream"] != "ok" {
		t.Fatalf("evaluation: %+v", e)
	}
	for range 3 {
		if rec := probe(); rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("with NATS down: %d %s", rec.Code, rec.Body)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("the check ran %d times for one evaluation and three probes", n)
	}
}
