package app

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/internal/testlog"
)

// An evaluation of the stream check that a shutdown ends (the health loop's
// context cancelled) is no outage of the event log, and is not logged as
// one: every stop that met an evaluation in flight warned that the log did
// not answer.
func TestStreamCheckEndedByShutdownIsNoOutage(t *testing.T) {
	_, js := estest.Connect(t, estest.StartServer(t))
	store, err := eventstore.New(t.Context(), js, eventstore.WithStorage(jetstream.MemoryStorage))
	if err != nil {
		t.Fatal(err)
	}
	var buf testlog.Buffer
	check := streamCheck(slog.New(slog.NewTextHandler(&buf, nil)), store)
	if err := check(t.Context()); err != nil {
		t.Fatalf("a log that answers: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_ = check(ctx)
	if strings.Contains(buf.String(), "level=WARN") || strings.Contains(buf.String(), "level=ERROR") {
		t.Fatalf("an evaluation ended by shutdown was logged as an outage:\n%s", buf.String())
	}
	// One that runs out of its time is the log not answering: refused,
	// and told.
	late, stop := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer stop()
	if err := check(late); err == nil || !strings.Contains(buf.String(), "level=WARN") {
		t.Fatalf("an evaluation out of time: %v, logged %q; want a failed check and a warning", err, buf.String())
	}
}
