package deadlines_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore/schedule"
	"github.com/orderstream/orderstream/services/deadlines"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// failFirstDelete is the DEADLINES stream whose first Delete of a handled
// firing fails (its stream leader moving, say).
type failFirstDelete struct {
	*schedule.Stream
	failed atomic.Bool
}

func (f *failFirstDelete) Delete(ctx context.Context, seq uint64) error {
	if f.failed.CompareAndSwap(false, true) {
		return errors.New("injected: delete not answered")
	}
	return f.Stream.Delete(ctx, seq)
}

// firedCount is orders.deadlines.fired for kind and outcome.
func firedCount(t *testing.T, r sdkmetric.Reader, kind, outcome string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			if mt.Name != "orders.deadlines.fired" {
				continue
			}
			for _, dp := range mt.Data.(metricdata.Sum[int64]).DataPoints {
				k, _ := dp.Attributes.Value(attribute.Key("kind"))
				o, _ := dp.Attributes.Value(attribute.Key("outcome"))
				if k.AsString() == kind && o.AsString() == outcome {
					n += dp.Value
				}
			}
		}
	}
	return n
}

// A payment timeout that cancelled its order but whose firing could not
// be deleted at the first try is counted "cancelled". It was counted only
// "ignored", by the redelivery that found the order cancelled.
func TestCancellationCountedWhenTheFiringsDeleteFails(t *testing.T) {
	e := start(t)
	reader := sdkmetric.NewManualReader()
	timers := &failFirstDelete{Stream: e.timers(t)}
	e.runTimers(t, timers, time.Second, time.Hour, deadlines.WithMeter(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	id := e.place(t, "delete-fails")
	cancelledOnce(t, e.waitEvent(t, id, "OrderCancelled"))
	consumerReaches(t, e, deadlines.StreamName, deadlines.FiredConsumer, "the firing was never settled", func(info *jetstream.ConsumerInfo) bool {
		return timers.failed.Load() && info.Delivered.Consumer >= 2 && info.NumAckPending == 0 && info.NumPending == 0 && info.NumRedelivered == 0
	})
	cancelled, ignored := firedCount(t, reader, "payment_timeout", "cancelled"), firedCount(t, reader, "payment_timeout", "ignored")
	if cancelled != 1 {
		t.Fatalf("orders.deadlines.fired{payment_timeout}: cancelled %d, ignored %d; want cancelled 1 (the order was cancelled by its payment timeout)", cancelled, ignored)
	}
}
