// Package otelstore wraps the event store with OpenTelemetry: a span per
// append, load, get, head, read and follow carrying the order id and
// positions, counters of appended events and conflicts, and the W3C trace
// context written into each event's headers so projections, payments and
// audit can join the trace of the command that caused them. It wraps the
// whole store, so that a service gets its tracing by taking the wrapper in
// place of the store. Tracing stays a wrapper: the store itself knows
// nothing of OpenTelemetry.
package otelstore

import (
	"context"
	"errors"
	"iter"

	"github.com/orderstream/orderstream/eventstore"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
)

// traceContext is fixed rather than the global propagator: the headers are
// part of the stored format, and must not change with process configuration.
var traceContext = propagation.TraceContext{}

// Inner is the store that is wrapped: the methods of *eventstore.Store.
type Inner interface {
	eventstore.Log
	ReadBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error]
	FollowBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error]
	Subscribe(ctx context.Context, name string, handle func(eventstore.Delivery), opts ...eventstore.SubscribeOption) error
	StreamName() string
	SubjectPrefix() string
	Subject(orderID string) string
	Immutable() error
}

var (
	_ Inner          = (*eventstore.Store)(nil)
	_ eventstore.Log = (*Store)(nil)
)

// Store is a traced, metered Inner.
type Store struct {
	inner     Inner
	tracer    trace.Tracer
	appends   metric.Int64Counter
	events    metric.Int64Counter
	conflicts metric.Int64Counter
	dups      metric.Int64Counter
}

// Wrap instruments inner with the given providers.
func Wrap(inner Inner, tp trace.TracerProvider, mp metric.MeterProvider) (*Store, error) {
	const scope = "github.com/orderstream/orderstream/eventstore"
	m := mp.Meter(scope)
	s := &Store{inner: inner, tracer: tp.Tracer(scope)}
	var err, e error
	s.appends, e = m.Int64Counter("orders.eventstore.appends", metric.WithDescription("Append calls that wrote events."))
	err = errors.Join(err, e)
	s.events, e = m.Int64Counter("orders.eventstore.events_appended", metric.WithDescription("Events written to the log."))
	err = errors.Join(err, e)
	s.conflicts, e = m.Int64Counter("orders.eventstore.conflicts", metric.WithDescription("Appends refused because the expected revision was stale."))
	err = errors.Join(err, e)
	s.dups, e = m.Int64Counter("orders.eventstore.duplicates", metric.WithDescription("Appends recognised as retries of an earlier request."))
	err = errors.Join(err, e)
	return s, err
}

// SubjectTemplate is the destination template of every append and
// consumption in spans ("messaging.destination.template"): the subject with
// the order id as a placeholder, a name of bounded cardinality.
func SubjectTemplate(prefix string) string { return prefix + ".{order_id}" }

// MessagingSystem is the "messaging.system" attribute of the spans that
// append to and consume the log.
var MessagingSystem = attribute.String("messaging.system", "nats")

// Append appends through the inner store inside an "eventstore.append"
// producer span carrying OpenTelemetry's messaging attributes (system nats,
// operation send, the subject and its template, the message id of a single
// event, the count of a batch), after writing the span's trace context into
// each event that has none.
func (s *Store) Append(ctx context.Context, orderID string, expectedRevision uint64, events []eventstore.EventData) (eventstore.AppendResult, error) {
	ctx, span := s.tracer.Start(ctx, "eventstore.append", trace.WithSpanKind(trace.SpanKindProducer))
	defer span.End()
	if span.IsRecording() {
		// Built only for a span that keeps them: with tracing off (the
		// default) they were a tenth of a CreateOrder's allocations.
		span.SetAttributes(s.appendAttributes(orderID, expectedRevision, events)...)
	}
	if span.SpanContext().IsValid() {
		carrier := propagation.MapCarrier{}
		traceContext.Inject(ctx, carrier)
		if tp := carrier.Get("traceparent"); tp != "" {
			for i := range events {
				if events[i].Meta.TraceParent == "" {
					events[i].Meta.TraceParent = tp
					events[i].Meta.TraceState = carrier.Get("tracestate")
				}
			}
		}
	}
	res, err := s.inner.Append(ctx, orderID, expectedRevision, events)
	switch {
	case errors.Is(err, eventstore.ErrConflict):
		s.conflicts.Add(ctx, 1)
		span.SetAttributes(attribute.Bool("eventstore.conflict", true))
	case err != nil:
		fail(span, err, "append failed")
	case res.Duplicate:
		s.dups.Add(ctx, 1)
		span.SetAttributes(attribute.Bool("eventstore.duplicate", true), attribute.Int64("log.position", int64(res.Position)))
	default:
		s.appends.Add(ctx, 1)
		s.events.Add(ctx, int64(len(events)))
		if span.IsRecording() {
			span.SetAttributes(attribute.Int64("log.position", int64(res.Position)))
		}
	}
	return res, err
}

// appendAttributes are the attributes of an append's span.
func (s *Store) appendAttributes(orderID string, expectedRevision uint64, events []eventstore.EventData) []attribute.KeyValue {
	attrs := []attribute.KeyValue{attribute.String("order.id", orderID), attribute.Int64("order.expected_revision", int64(expectedRevision)),
		attribute.Int("events.count", len(events)),
		MessagingSystem, semconv.MessagingOperationTypeSend, semconv.MessagingOperationName("publish"),
		semconv.MessagingDestinationTemplate(SubjectTemplate(s.inner.SubjectPrefix())),
		semconv.MessagingDestinationName(s.inner.Subject(orderID))}
	switch {
	case len(events) > 1:
		attrs = append(attrs, semconv.MessagingBatchMessageCount(len(events)))
	case len(events) == 1 && events[0].Meta.RequestID != "":
		// The message id the store gives the event (Nats-Msg-Id), by
		// which the server deduplicates it.
		attrs = append(attrs, semconv.MessagingMessageID(events[0].Meta.RequestID+":0"))
	}
	return attrs
}

// Load loads through the inner store inside an "eventstore.load" span.
func (s *Store) Load(ctx context.Context, orderID string) ([]eventstore.Recorded, error) {
	return s.load(ctx, false, orderID, s.inner.Load)
}

// LoadLatest loads through the inner store's LoadLatest inside an
// "eventstore.load" span with eventstore.latest set.
func (s *Store) LoadLatest(ctx context.Context, orderID string) ([]eventstore.Recorded, error) {
	return s.load(ctx, true, orderID, s.inner.LoadLatest)
}

// LoadLatestAfter loads through the inner store's LoadLatestAfter inside
// an "eventstore.load" span with eventstore.latest and log.position.after
// set.
func (s *Store) LoadLatestAfter(ctx context.Context, orderID string, afterPosition uint64) ([]eventstore.Recorded, error) {
	return s.load(ctx, true, orderID, func(ctx context.Context, orderID string) ([]eventstore.Recorded, error) {
		trace.SpanFromContext(ctx).SetAttributes(attribute.Int64("log.position.after", int64(afterPosition)))
		return s.inner.LoadLatestAfter(ctx, orderID, afterPosition)
	})
}

// LoadAfter loads through the inner store's LoadAfter inside an
// "eventstore.load" span with log.position.after set.
func (s *Store) LoadAfter(ctx context.Context, orderID string, afterPosition uint64) ([]eventstore.Recorded, error) {
	return s.load(ctx, false, orderID, func(ctx context.Context, orderID string) ([]eventstore.Recorded, error) {
		trace.SpanFromContext(ctx).SetAttributes(attribute.Int64("log.position.after", int64(afterPosition)))
		return s.inner.LoadAfter(ctx, orderID, afterPosition)
	})
}

func (s *Store) load(ctx context.Context, latest bool, orderID string, load func(context.Context, string) ([]eventstore.Recorded, error)) ([]eventstore.Recorded, error) {
	ctx, span := s.tracer.Start(ctx, "eventstore.load", trace.WithAttributes(attribute.String("order.id", orderID), attribute.Bool("eventstore.latest", latest)))
	defer span.End()
	recs, err := load(ctx, orderID)
	if err != nil {
		fail(span, err, "load failed")
		return nil, err
	}
	span.SetAttributes(attribute.Int("events.count", len(recs)))
	if n := len(recs); n > 0 {
		span.SetAttributes(attribute.Int64("order.revision", int64(recs[n-1].Version)),
			attribute.Int64("log.position.last", int64(recs[n-1].Position)))
	}
	return recs, nil
}

// Get gets through the inner store inside an "eventstore.get" span carrying
// the position and, when there is an event there, its order id. A position
// without an event (ErrEventNotFound) is an answer, not a failure of the
// span.
func (s *Store) Get(ctx context.Context, position uint64) (eventstore.Recorded, error) {
	ctx, span := s.tracer.Start(ctx, "eventstore.get", trace.WithAttributes(attribute.Int64("log.position", int64(position))))
	defer span.End()
	rec, err := s.inner.Get(ctx, position)
	switch {
	case errors.Is(err, eventstore.ErrEventNotFound):
		span.SetAttributes(attribute.Bool("eventstore.found", false))
	case err != nil:
		fail(span, err, "get failed")
	default:
		span.SetAttributes(attribute.String("order.id", rec.OrderID))
	}
	return rec, err
}

// Head asks the inner store for the head inside an "eventstore.head" span
// carrying it as log.position.
func (s *Store) Head(ctx context.Context) (uint64, error) {
	ctx, span := s.tracer.Start(ctx, "eventstore.head")
	defer span.End()
	head, err := s.inner.Head(ctx)
	if err != nil {
		fail(span, err, "head failed")
		return 0, err
	}
	span.SetAttributes(attribute.Int64("log.position", int64(head)))
	return head, nil
}

// Read reads through the inner store inside an "eventstore.read" span that
// lasts as long as the iteration (see traceSeq).
func (s *Store) Read(ctx context.Context, from uint64) iter.Seq2[eventstore.Recorded, error] {
	return traceSeq(ctx, s.tracer, "eventstore.read", from, func(ctx context.Context) iter.Seq2[eventstore.Recorded, error] {
		return s.inner.Read(ctx, from)
	}, recordedCount)
}

// Follow follows through the inner store inside an "eventstore.follow"
// span that lasts as long as the iteration (see traceSeq).
func (s *Store) Follow(ctx context.Context, from uint64) iter.Seq2[eventstore.Recorded, error] {
	return traceSeq(ctx, s.tracer, "eventstore.follow", from, func(ctx context.Context) iter.Seq2[eventstore.Recorded, error] {
		return s.inner.Follow(ctx, from)
	}, recordedCount)
}

// ReadBatches reads through the inner store inside an "eventstore.read"
// span that lasts as long as the iteration (see traceSeq).
func (s *Store) ReadBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error] {
	return traceSeq(ctx, s.tracer, "eventstore.read", from, func(ctx context.Context) iter.Seq2[eventstore.Batch, error] {
		return s.inner.ReadBatches(ctx, from, opts...)
	}, batchCount)
}

// FollowBatches follows through the inner store inside an
// "eventstore.follow" span that lasts as long as the iteration (see
// traceSeq).
func (s *Store) FollowBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error] {
	return traceSeq(ctx, s.tracer, "eventstore.follow", from, func(ctx context.Context) iter.Seq2[eventstore.Batch, error] {
		return s.inner.FollowBatches(ctx, from, opts...)
	}, batchCount)
}

func recordedCount(r eventstore.Recorded) (int, uint64) { return 1, r.Position }

func batchCount(b eventstore.Batch) (int, uint64) {
	if n := len(b.Entries); n > 0 {
		return n, b.Entries[n-1].Position
	}
	return 0, 0
}

// traceSeq runs the iteration of seq inside a span named name, a child of
// ctx's, that starts with the first step and ends with the last: it
// carries log.position.from and, at its end, events.count and
// log.position.last, and records the error that ended the iteration. Only
// the count is kept per step, so the iteration costs no more than before.
func traceSeq[T any](ctx context.Context, tracer trace.Tracer, name string, from uint64,
	seq func(context.Context) iter.Seq2[T, error], count func(T) (int, uint64),
) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		ctx, span := tracer.Start(ctx, name, trace.WithAttributes(attribute.Int64("log.position.from", int64(from))))
		defer span.End()
		var n int
		var last uint64
		defer func() {
			span.SetAttributes(attribute.Int("events.count", n), attribute.Int64("log.position.last", int64(last)))
		}()
		for v, err := range seq(ctx) {
			if err != nil {
				fail(span, err, "read failed")
			} else if k, p := count(v); k > 0 {
				n, last = n+k, p
			}
			if !yield(v, err) {
				return
			}
		}
	}
}

// Subscribe subscribes through the inner store without a span of its own:
// a subscription lasts as long as its subscriber, and each delivery's
// handler starts its own span, linked to the append through the event's
// trace context (ContextFrom, LinkFrom).
func (s *Store) Subscribe(ctx context.Context, name string, handle func(eventstore.Delivery), opts ...eventstore.SubscribeOption) error {
	return s.inner.Subscribe(ctx, name, handle, opts...)
}

// StreamName returns the inner store's stream name.
func (s *Store) StreamName() string { return s.inner.StreamName() }

// SubjectPrefix returns the inner store's subject prefix.
func (s *Store) SubjectPrefix() string { return s.inner.SubjectPrefix() }

// Subject returns the inner store's subject of an order's events.
func (s *Store) Subject(orderID string) string { return s.inner.Subject(orderID) }

// Immutable returns the inner store's Immutable.
func (s *Store) Immutable() error { return s.inner.Immutable() }

// fail marks span as failed with err.
func fail(span trace.Span, err error, desc string) {
	span.RecordError(err)
	span.SetStatus(codes.Error, desc)
}

// ContextFrom returns ctx carrying the remote span context stored in an
// event's headers, for consumers that continue or link to the command's
// trace.
func ContextFrom(ctx context.Context, m eventstore.Metadata) context.Context {
	if m.TraceParent == "" {
		return ctx
	}
	return traceContext.Extract(ctx, propagation.MapCarrier{"traceparent": m.TraceParent, "tracestate": m.TraceState})
}

// LinkFrom returns a span link to the command that wrote an event, for batch
// consumers whose one span covers many events.
func LinkFrom(m eventstore.Metadata) (trace.Link, bool) {
	sc := trace.SpanContextFromContext(ContextFrom(context.Background(), m))
	if !sc.IsValid() {
		return trace.Link{}, false
	}
	return trace.Link{SpanContext: sc}, true
}
