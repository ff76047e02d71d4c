package projections_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderstream/orderstream/api/convert"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/internal/natsconn/natstest"
	"github.com/orderstream/orderstream/order"
	"github.com/orderstream/orderstream/projections"
)

// The README (Durability): "A node that finds so while it follows the log
// (its NATS server came back without those events) stops and exits
// non-zero". TestRunnerStopsWhenItsLogRetookItsPositions proves it on a
// fake log whose follow fails when the log is switched; here the log is
// the JetStream store, whose NATS server restarts from files that lack the
// last events (as after a power loss under NATS_SYNC=interval) and then
// takes new events at those positions.
func TestRunnerOnJetStreamStopsWhenItsServerCameBackWithoutItsLastEvents(t *testing.T) {
	ctx := t.Context()
	base := t.TempDir()
	srv := natstest.StartServer(t, func(o *server.Options) { o.JetStream, o.StoreDir = true, base })
	port := srv.Addr().(*net.TCPAddr).Port
	start := func() *server.Server { // the same port and files, as an operator restarting NATS
		return natstest.Run(t, &server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: base, NoLog: true, NoSigs: true}, 10*time.Second)
	}
	files := filepath.Join(base, server.JetStreamStoreDir)
	reconnected := make(chan struct{}, 8)
	_, js := estest.ConnectURL(t, srv.ClientURL(), nats.ReconnectHandler(func(*nats.Conn) {
		select {
		case reconnected <- struct{}{}:
		default:
		}
	}))
	store, err := eventstore.New(ctx, js, eventstore.WithStorage(jetstream.FileStorage))
	if err != nil {
		t.Fatal(err)
	}
	create(t, store, "lost-0", "c")
	create(t, store, "lost-1", "c")

	// What the disk will hold after the power loss: the log of two events.
	natstest.Shut(srv)
	lost := t.TempDir()
	if err := os.CopyFS(lost, os.DirFS(files)); err != nil {
		t.Fatal(err)
	}
	srv = start()
	<-reconnected
	var lastBefore uint64
	for i := 2; i < 5; i++ {
		lastBefore = createRetried(t, store, fmt.Sprintf("lost-%d", i))
	}

	d, err := projections.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	r, err := projections.NewRunner(store, d)
	if err != nil {
		t.Fatal(err)
	}
	rctx, stopRun := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	t.Cleanup(func() { stopRun(); <-done })
	if err := r.WaitForCommitted(ctx, lastBefore); err != nil {
		t.Fatal(err)
	}

	// The server goes down and comes back from the files of the power loss.
	natstest.Shut(srv)
	if err := os.RemoveAll(files); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(files, os.DirFS(lost)); err != nil {
		t.Fatal(err)
	}
	start()
	<-reconnected
	var head uint64
	for i := range 4 {
		head = createRetried(t, store, fmt.Sprintf("new-%d", i))
	}
	if head <= lastBefore {
		t.Fatalf("head %d after the loss, want past the read model's checkpoint %d", head, lastBefore)
	}

	wctx, stopWait := context.WithCancel(ctx)
	defer stopWait()
	followedOn := make(chan struct{})
	go func() {
		if r.WaitForCommitted(wctx, head) == nil {
			close(followedOn)
		}
	}()
	select {
	case err := <-done:
		done <- err // for the cleanup
		if !errors.Is(err, projections.ErrNotTheLog) {
			t.Fatalf("Run on a log that lost the read model's checkpoint: %v, want ErrNotTheLog", err)
		}
	case <-followedOn:
		var missing []string
		for i := range 3 {
			id := fmt.Sprintf("new-%d", i)
			if _, _, err := r.ReadModel().GetOrder(ctx, id); errors.Is(err, projections.ErrOrderNotFound) {
				missing = append(missing, id)
			}
		}
		t.Fatalf("the runner followed on to position %d of a log that no longer holds its checkpoint %d; orders the log holds that the read model skipped: %v",
			head, lastBefore, missing)
	}
}

// createRetried is create, retried with the same request id while the
// store answers unavailable (a server still recovering its streams), as a
// client retries a command.
func createRetried(t *testing.T, store *eventstore.Store, id string) uint64 {
	t.Helper()
	typ, data, err := convert.EncodeEvent(order.OrderCreated{OrderID: id, CustomerID: "c", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 0; ; attempt++ {
		res, err := store.Append(t.Context(), id, 0, []eventstore.EventData{{Type: typ, Data: data, Meta: eventstore.Metadata{RequestID: id, OccurredAt: time.Now()}}})
		if err == nil {
			return res.Position
		}
		if !errors.Is(err, eventstore.ErrUnavailable) || attempt == 20 {
			t.Fatal(err)
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
