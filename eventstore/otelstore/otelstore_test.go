package otelstore_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/eventstore/otelstore"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	nooptrace "go.opentelemetry.io/otel/trace/noop"
)

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// traced is a JetStream store on an embedded server, and the wrapper
// around it recording every span it ends.
func traced(t *testing.T) (*eventstore.Store, *otelstore.Store, *tracetest.SpanRecorder, *sdktrace.TracerProvider) {
	t.Helper()
	srv := estest.StartServer(t)
	_, js := estest.Connect(t, srv)
	inner, err := eventstore.New(t.Context(), js, eventstore.WithStorage(jetstream.MemoryStorage))
	if err != nil {
		t.Fatal(err)
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	s, err := otelstore.Wrap(inner, tp, noopmetric.NewMeterProvider())
	if err != nil {
		t.Fatal(err)
	}
	return inner, s, rec, tp
}

// Every call through the wrapper is a span under the caller's, with the
// attributes that say what it read or wrote; the wrapper answers as the
// store does.
func TestEveryMethodIsTraced(t *testing.T) {
	inner, s, rec, tp := traced(t)
	ctx, root := tp.Tracer("test").Start(t.Context(), "root")
	if _, err := s.Append(ctx, "o1", 0, []eventstore.EventData{{Type: "A"}, {Type: "B"}}); err != nil {
		t.Fatal(err)
	}
	var followed map[attribute.Key]attribute.Value
	calls := []struct {
		span string
		call func(context.Context) error
		want map[attribute.Key]attribute.Value
	}{
		{"eventstore.load", func(ctx context.Context) error { _, err := s.Load(ctx, "o1"); return err },
			map[attribute.Key]attribute.Value{"order.id": attribute.StringValue("o1"), "events.count": attribute.IntValue(2)}},
		{"eventstore.load", func(ctx context.Context) error { _, err := s.LoadAfter(ctx, "o1", 1); return err },
			map[attribute.Key]attribute.Value{"log.position.after": attribute.Int64Value(1), "events.count": attribute.IntValue(1)}},
		{"eventstore.load", func(ctx context.Context) error { _, err := s.LoadLatest(ctx, "o1"); return err },
			map[attribute.Key]attribute.Value{"eventstore.latest": attribute.BoolValue(true)}},
		{"eventstore.get", func(ctx context.Context) error { _, err := s.Get(ctx, 2); return err },
			map[attribute.Key]attribute.Value{"log.position": attribute.Int64Value(2), "order.id": attribute.StringValue("o1")}},
		{"eventstore.get", func(ctx context.Context) error {
			if _, err := s.Get(ctx, 9); !errors.Is(err, eventstore.ErrEventNotFound) {
				return err
			}
			return nil
		}, map[attribute.Key]attribute.Value{"eventstore.found": attribute.BoolValue(false)}},
		{"eventstore.head", func(ctx context.Context) error { _, err := s.Head(ctx); return err },
			map[attribute.Key]attribute.Value{"log.position": attribute.Int64Value(2)}},
		{"eventstore.read", func(ctx context.Context) error { return last(s.Read(ctx, 1)) },
			map[attribute.Key]attribute.Value{"log.position.from": attribute.Int64Value(1), "events.count": attribute.IntValue(2), "log.position.last": attribute.Int64Value(2)}},
		{"eventstore.read", func(ctx context.Context) error { return last(s.ReadBatches(ctx, 2)) },
			map[attribute.Key]attribute.Value{"log.position.from": attribute.Int64Value(2), "events.count": attribute.IntValue(1), "log.position.last": attribute.Int64Value(2)}},
		{"eventstore.follow", func(ctx context.Context) error { _, err := first(ctx, s.Follow); return err },
			map[attribute.Key]attribute.Value{"events.count": attribute.IntValue(1), "log.position.last": attribute.Int64Value(1)}},
		// A followed batch holds what arrived within its wait: both
		// events, or on a busy machine the first alone. The span
		// describes the batch delivered (want is filled by the call).
		{"eventstore.follow", func(ctx context.Context) error {
			b, err := first(ctx, func(ctx context.Context, from uint64) iter.Seq2[eventstore.Batch, error] {
				return s.FollowBatches(ctx, from)
			})
			if err != nil || len(b.Entries) == 0 {
				return cmp.Or(err, errors.New("the first batch followed is empty"))
			}
			followed = map[attribute.Key]attribute.Value{"events.count": attribute.IntValue(len(b.Entries)),
				"log.position.last": attribute.Int64Value(int64(b.Entries[len(b.Entries)-1].Position))}
			return nil
		}, nil},
	}
	for i, c := range calls {
		if err := c.call(ctx); err != nil {
			t.Fatalf("call %d (%s): %v", i, c.span, err)
		}
		if c.want == nil {
			c.want = followed
		}
		spans := rec.Ended()
		got := spans[len(spans)-1]
		if got.Name() != c.span || got.Parent().SpanID() != root.SpanContext().SpanID() || got.Status().Code == codes.Error {
			t.Fatalf("call %d: last span %s (parent %v, status %v), want %s under the root", i, got.Name(), got.Parent().SpanID(), got.Status(), c.span)
		}
		a := attrs(got)
		for k, v := range c.want {
			if a[k] != v {
				t.Errorf("call %d (%s): %s = %v, want %v", i, c.span, k, a[k].String(), v.String())
			}
		}
	}
	// A failed read is a failed span.
	if err := last(s.ReadBatches(ctx, 0, eventstore.BatchSize(0))); !errors.Is(err, eventstore.ErrInvalidOption) {
		t.Fatalf("ReadBatches with an invalid option: %v", err)
	}
	if spans := rec.Ended(); spans[len(spans)-1].Status().Code != codes.Error {
		t.Fatal("a read that failed ended its span without an error status")
	}
	if s.StreamName() != inner.StreamName() || s.Subject("x") != inner.Subject("x") || s.SubjectPrefix() != inner.SubjectPrefix() || !errors.Is(s.Immutable(), inner.Immutable()) {
		t.Fatal("the wrapper names the stream and subjects otherwise than the store")
	}
}

// A load's span names the order's revision (its last event's version) and,
// apart, the log position of that event: on a log of many orders they
// differ, and a trace that gave the position as the revision could not be
// set beside the append's expected revision.
func TestLoadSpanTellsRevisionFromPosition(t *testing.T) {
	_, s, rec, _ := traced(t)
	estest.MustAppend(t, s, "other", 0, estest.Event("A", "", ""), estest.Event("B", "", ""))
	estest.MustAppend(t, s, "o", 0, estest.Event("A", "", ""))
	if _, err := s.Load(t.Context(), "o"); err != nil {
		t.Fatal(err)
	}
	spans := rec.Ended()
	a := attrs(spans[len(spans)-1])
	if a["order.revision"] != attribute.Int64Value(1) || a["log.position.last"] != attribute.Int64Value(3) {
		t.Fatalf("load span of an order whose one event is at log position 3: order.revision %s, log.position.last %s; want 1 and 3",
			a["order.revision"].String(), a["log.position.last"].String())
	}
}

// last runs a finite iteration and returns its error, if any.
func last[T any](seq iter.Seq2[T, error]) error {
	for _, err := range seq {
		if err != nil {
			return err
		}
	}
	return nil
}

// first follows from position 1 until the first step, and returns it.
func first[T any](ctx context.Context, follow func(context.Context, uint64) iter.Seq2[T, error]) (T, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for v, err := range follow(ctx, 1) {
		return v, err
	}
	var zero T
	return zero, nil
}

// BenchmarkAppendUntraced appends one event at a time through the wrapper
// with tracing off (a no-op provider, ordersd's default), to show what the
// wrapper itself costs then.
func BenchmarkAppendUntraced(b *testing.B) {
	srv := estest.StartServer(b)
	_, js := estest.Connect(b, srv)
	inner, err := eventstore.New(b.Context(), js, eventstore.WithStorage(jetstream.MemoryStorage))
	if err != nil {
		b.Fatal(err)
	}
	s, err := otelstore.Wrap(inner, nooptrace.NewTracerProvider(), noopmetric.NewMeterProvider())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev := []eventstore.EventData{{Type: "OrderCreated", Data: []byte("{}"), Meta: eventstore.Metadata{RequestID: fmt.Sprint("r", i)}}}
		if _, err := s.Append(b.Context(), fmt.Sprint("o", i), 0, ev); err != nil {
			b.Fatal(err)
		}
	}
}
