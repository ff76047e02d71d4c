// Package otelstore wraps the event store's write path with OpenTelemetry:
// a span per append and load carrying the order id and position, counters
// of appended events and conflicts, and the W3C trace context written into
// each event's headers so projections, payments and audit can join the trace
// of the command that caused them. Tracing stays a wrapper: the store itself
// knows nothing of OpenTelemetry.
package otelstore

import (
	"context"
	"errors"

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

// Inner is the part of the store that is wrapped.
type Inner interface {
	Append(ctx context.Context, orderID string, expectedRevision uint64, events []eventstore.EventData) (eventstore.AppendResult, error)
	Load(ctx context.Context, orderID string) ([]eventstore.Recorded, error)
	LoadLatest(ctx context.Context, orderID string) ([]eventstore.Recorded, error)
}

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
	attrs := []attribute.KeyValue{attribute.String("order.id", orderID), attribute.Int64("order.expected_revision", int64(expectedRevision)),
		attribute.Int("events.count", len(events)),
		MessagingSystem, semconv.MessagingOperationTypeSend, semconv.MessagingOperationName("publish")}
	if sp, ok := s.inner.(interface{ SubjectPrefix() string }); ok {
		attrs = append(attrs, semconv.MessagingDestinationTemplate(SubjectTemplate(sp.SubjectPrefix())),
			semconv.MessagingDestinationName(sp.SubjectPrefix()+"."+orderID))
	}
	switch {
	case len(events) > 1:
		attrs = append(attrs, semconv.MessagingBatchMessageCount(len(events)))
	case len(events) == 1 && events[0].Meta.RequestID != "":
		// The message id the store gives the event (Nats-Msg-Id), by
		// which the server deduplicates it.
		attrs = append(attrs, semconv.MessagingMessageID(events[0].Meta.RequestID+":0"))
	}
	ctx, span := s.tracer.Start(ctx, "eventstore.append", trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
	defer span.End()
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
	res, err := s.inner.Append(ctx, orderID, expectedRevision, events)
	switch {
	case errors.Is(err, eventstore.ErrConflict):
		s.conflicts.Add(ctx, 1)
		span.SetAttributes(attribute.Bool("eventstore.conflict", true))
	case err != nil:
		span.RecordError(err)
		span.SetStatus(codes.Error, "append failed")
	case res.Duplicate:
		s.dups.Add(ctx, 1)
		span.SetAttributes(attribute.Bool("eventstore.duplicate", true), attribute.Int64("log.position", int64(res.Position)))
	default:
		s.appends.Add(ctx, 1)
		s.events.Add(ctx, int64(len(events)))
		span.SetAttributes(attribute.Int64("log.position", int64(res.Position)))
	}
	return res, err
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

func (s *Store) load(ctx context.Context, latest bool, orderID string, load func(context.Context, string) ([]eventstore.Recorded, error)) ([]eventstore.Recorded, error) {
	ctx, span := s.tracer.Start(ctx, "eventstore.load", trace.WithAttributes(attribute.String("order.id", orderID), attribute.Bool("eventstore.latest", latest)))
	defer span.End()
	recs, err := load(ctx, orderID)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "load failed")
		return nil, err
	}
	span.SetAttributes(attribute.Int("events.count", len(recs)))
	if n := len(recs); n > 0 {
		span.SetAttributes(attribute.Int64("order.revision", int64(recs[n-1].Position)))
	}
	return recs, nil
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
