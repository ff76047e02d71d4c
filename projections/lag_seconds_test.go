package projections_test

import (
	"context"
	"testing"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
	"github.com/orderstream/orderstream/projections"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace/noop"
)

// createAt appends an OrderCreated for id that occurred at when.
func createAt(t *testing.T, store appender, id string, when time.Time) uint64 {
	t.Helper()
	typ, data, err := convert.EncodeEvent(order.OrderCreated{OrderID: id, CustomerID: "c", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := store.Append(t.Context(), id, 0, []eventstore.EventData{{Type: typ, Data: data, Meta: eventstore.Metadata{RequestID: id, OccurredAt: when}}})
	if err != nil {
		t.Fatal(err)
	}
	return res.Position
}

// orders.projection.lag_seconds says how far behind the log the read
// model is, in time. After a quiet hour (the last event applied an
// hour ago), one event appended a moment ago that the projection has not
// applied yet is a lag of a moment, not of an hour: a node that was idle
// reported an hour of lag (and fired any lag alert) for every scrape that
// fell between an append and its apply.
func TestLagSecondsIsTheAgeOfWhatIsNotApplied(t *testing.T) {
	_, store := fileStore(t)
	ctx := t.Context()
	d, err := projections.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	r, err := projections.NewRunner(store, d, projections.WithTelemetry(noop.NewTracerProvider(), mp))
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	// The last order of a quiet hour.
	first := createAt(t, store, "quiet-1", time.Now().Add(-time.Hour))
	if err := r.WaitFor(ctx, first); err != nil {
		t.Fatal(err)
	}
	// The projection held up (here: stopped) while a new order comes in.
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	appended := time.Now()
	createAt(t, store, "new-1", appended)

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	var lagEvents int64 = -1
	lagSeconds := -1.0
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch m.Name {
			case "orders.projection.lag_events":
				lagEvents = m.Data.(metricdata.Gauge[int64]).DataPoints[0].Value
			case "orders.projection.lag_seconds":
				lagSeconds = m.Data.(metricdata.Gauge[float64]).DataPoints[0].Value
			}
		}
	}
	if lagEvents != 1 {
		t.Fatalf("lag_events %d, want 1", lagEvents)
	}
	// Far below the quiet hour, whatever the machine's pace.
	if lagSeconds < 0 || lagSeconds >= 1800 {
		t.Fatalf("lag_seconds %.0f with one event not applied, appended %.3fs ago: want its age, not the quiet hour's",
			lagSeconds, time.Since(appended).Seconds())
	}
}
