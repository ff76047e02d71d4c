package app

import (
	"context"
	"database/sql"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/api/convert"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/order"
	"github.com/orderstream/orderstream/projections"
	_ "modernc.org/sqlite" // the read model's driver, to break it
)

// The projection check fails once the runner has stopped for good, though
// it caught up before, and the runner's error goes to Run: until ordersd
// exits, a probe sees the projection stopped rather than ready.
func TestProjectionStoppedIsNotReady(t *testing.T) {
	ctx := t.Context()
	_, js := estest.Connect(t, estest.StartServer(t))
	store, err := eventstore.New(ctx, js, eventstore.WithStorage(jetstream.FileStorage))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := projections.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dir.Close() })
	runner, err := projections.NewRunner(store, dir)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{failed: newFailures(slog.New(slog.DiscardHandler))}
	p := n.startProjection(runner)
	t.Cleanup(p.stop)
	create := func(id string) uint64 {
		t.Helper()
		typ, data, err := convert.EncodeEvent(order.OrderCreated{OrderID: id, CustomerID: "c", Currency: "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		res, err := store.Append(ctx, id, 0, []eventstore.EventData{{Type: typ, Data: data, Meta: eventstore.Metadata{RequestID: id, OccurredAt: time.Now()}}})
		if err != nil {
			t.Fatal(err)
		}
		return res.Position
	}
	if err := runner.WaitFor(ctx, create("o-1")); err != nil {
		t.Fatal(err)
	}
	<-runner.Ready()
	if err := p.check(ctx); err != nil {
		t.Fatalf("caught up: %v", err)
	}

	db, err := sql.Open("sqlite", "file:"+dir.Current().Path()+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.ExecContext(ctx, `CREATE TRIGGER test_unwritable BEFORE UPDATE ON checkpoint BEGIN SELECT RAISE(ABORT, 'injected'); END`)
	_ = db.Close()
	if err != nil {
		t.Fatal(err)
	}
	create("o-2")
	// Bounds the wait for what the old code never did.
	bound, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	select {
	case err := <-n.failed.first:
		if !strings.Contains(err.Error(), "injected") {
			t.Fatalf("reported to Run: %v", err)
		}
	case <-bound.Done():
		t.Fatalf("the runner's failure never reached Run; the projection check says %v", p.check(ctx))
	}
	<-p.done
	if err := p.check(ctx); err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("after the runner stopped: %v", err)
	}
}
