package projections_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/api/convert"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
	"github.com/orderstream/orderstream/projections"
)

var (
	benchEvents   = flag.Int("rebuild.events", 20000, "events in the log for BenchmarkRebuild")
	benchPerOrder = flag.Int("rebuild.per-order", 5, "events per order in BenchmarkRebuild's log, 1 to 5: 1 makes every event create an order, as ordersbench floor's log does")
	benchSpread   = flag.Int("rebuild.spread", 1, "orders whose events BenchmarkRebuild's log interleaves: with 1 an order's events are contiguous; with n, n orders advance together, so an order's events are n apart and span batches, as in a live log")
)

// seedLog publishes n realistic events (orders of 5: created, 2 items,
// placed, paid) to a file-backed stream.
func seedLog(b *testing.B, js jetstream.JetStream, store *eventstore.Store, n int) {
	b.Helper()
	at := time.Now().UTC()
	per := min(max(*benchPerOrder, 1), 5)
	spread := max(*benchSpread, 1)
	for i := 0; i < n; i++ {
		// Groups of spread orders: event k of each, then event k+1.
		group, in := i/(spread*per), i%(spread*per)
		o, k := group*spread+in%spread, in/spread
		id := fmt.Sprintf("%08x-%07d", uint32(o)*2654435761, o) // scattered, as derived ids are
		var e order.Event
		switch k {
		case 0:
			e = order.OrderCreated{OrderID: id, CustomerID: fmt.Sprintf("c-%d", o%97), Currency: "EUR",
				Shipping: &order.Address{Line1: "1 Way", City: "Paris", Country: "FR"}}
		case 1:
			e = order.ItemAdded{SKU: "A", Quantity: 2, UnitPrice: 1250}
		case 2:
			e = order.ItemAdded{SKU: "B", Quantity: 1, UnitPrice: 499}
		case 3:
			e = order.OrderPlaced{Total: 2999}
		case 4:
			e = order.PaymentAuthorized{PaymentRef: "psp", Amount: 2999}
		}
		typ, data, err := convert.EncodeEvent(e)
		if err != nil {
			b.Fatal(err)
		}
		h, _, err := eventstore.EncodeEvent(eventstore.EventData{Type: typ, Data: data,
			Meta: eventstore.Metadata{RequestID: fmt.Sprint("r-", i), Actor: "bench", OccurredAt: at}}, uint64(k+1))
		if err != nil {
			b.Fatal(err)
		}
		m := &nats.Msg{Subject: store.Subject(id), Header: h, Data: data}
		if _, err := js.PublishMsgAsync(m); err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
}

// BenchmarkRebuild compares rebuilding the read model from the log with the
// raw ordered-consumer read rate of the same stream, in the same run.
// -rebuild.events sets the log size (1,000,000 for the figures in the
// README; the default keeps CI fast).
func BenchmarkRebuild(b *testing.B) {
	js, store := fileStore(b)
	ctx := context.Background()
	n := *benchEvents
	seedLog(b, js, store, n)
	for b.Loop() {
		// Raw floor: an ordered consumer reading every event, nothing else.
		t0 := time.Now()
		cons, err := js.OrderedConsumer(ctx, store.StreamName(), jetstream.OrderedConsumerConfig{})
		if err != nil {
			b.Fatal(err)
		}
		it, err := cons.Messages(jetstream.PullMaxMessages(2000))
		if err != nil {
			b.Fatal(err)
		}
		for range n {
			if _, err := it.Next(); err != nil {
				b.Fatal(err)
			}
		}
		it.Stop()
		raw := float64(n) / time.Since(t0).Seconds()

		dir := b.TempDir()
		d, err := projections.Open(ctx, dir)
		if err != nil {
			b.Fatal(err)
		}
		r, err := projections.NewRunner(store, d)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := r.Rebuild(ctx, nil); err != nil {
			b.Fatal(err)
		}
		rebuild := float64(n) / time.Since(t1).Seconds()
		var size int64
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if fi, err := os.Stat(filepath.Join(dir, e.Name())); err == nil {
				size += fi.Size()
			}
		}
		_ = r.ReadModel().Close()
		b.ReportMetric(raw, "raw-events/s")
		b.ReportMetric(rebuild, "rebuild-events/s")
		b.ReportMetric(rebuild/raw, "rebuild/raw")
		b.ReportMetric(float64(size)/float64(n)*1e6/(1<<20), "MiB/Mevents")
	}
}

// BenchmarkVisibilityLag appends events at a steady 1,000 per second and
// measures, for each, the time from the append's acknowledgement until the
// read model has applied it: what read-your-writes waits for.
func BenchmarkVisibilityLag(b *testing.B) {
	_, store := fileStore(b)
	ctx := context.Background()
	d, err := projections.Open(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	r, err := projections.NewRunner(store, d)
	if err != nil {
		b.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	defer func() { cancel(); <-done }()
	const rate = time.Millisecond
	lags := make([]time.Duration, 0, 2000)
	tick := time.NewTicker(rate)
	defer tick.Stop()
	var mu sync.Mutex
	var wg sync.WaitGroup
	i := 0
	for b.Loop() {
		<-tick.C
		i++
		pos := create(b, store, fmt.Sprintf("lag-%d", i), "c")
		acked := time.Now()
		wg.Go(func() {
			if err := r.WaitFor(ctx, pos); err != nil {
				return
			}
			mu.Lock()
			lags = append(lags, time.Since(acked))
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(lags)
	if len(lags) > 0 {
		b.ReportMetric(float64(lags[len(lags)/2].Microseconds()), "lag-p50-µs")
		b.ReportMetric(float64(lags[len(lags)*99/100].Microseconds()), "lag-p99-µs")
	}
}

// BenchmarkApplyBatch applies batches of 500 events (100 orders × 5) to a
// SQLite read model: the projection's unit of work. Each batch is built
// (ids, events, positions) with the timer stopped, so time and allocations
// are those of Apply alone.
func BenchmarkApplyBatch(b *testing.B) {
	ctx := context.Background()
	rm, err := projections.OpenReadModel(ctx, filepath.Join(b.TempDir(), "rm.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer rm.Close()
	pos := uint64(0)
	batch := make([]projections.Item, 0, 500)
	at := time.Now()
	build := func() {
		batch = batch[:0]
		for i := range 500 {
			pos++
			// Scattered like ids derived from request ids, not ascending.
			n := uint32((pos - 1) / 5)
			id := fmt.Sprintf("%08x-%d", n*2654435761, n)
			var e order.Event
			switch i % 5 {
			case 0:
				e = order.OrderCreated{OrderID: id, CustomerID: "c", Currency: "EUR"}
			case 1, 2:
				e = order.ItemAdded{SKU: fmt.Sprint("S", i), Quantity: 1, UnitPrice: 100}
			case 3:
				e = order.ShippingAddressSet{Address: order.Address{Line1: "1", City: "Oslo", Country: "NO"}}
			case 4:
				e = order.OrderPlaced{Total: 200}
			}
			batch = append(batch, projections.Item{Rec: eventstore.Recorded{OrderID: id, Position: pos, Type: e.EventType(), Time: at}, Event: e})
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		// Every batch needs new orders and positions (Apply skips what is
		// at or below the checkpoint), so it is built per iteration, off
		// the clock.
		b.StopTimer()
		build()
		b.StartTimer()
		if _, _, err := rm.Apply(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkApplyToExistingOrders applies one event at a time to one of
// 10,000 orders created before, in turn: the live projection under a
// steady trickle of commands on orders it already holds, where every batch
// starts by finding its order's row. item adds an item (no indexed column
// changes); cancel cancels the order (its status changes), so it runs at
// most 10,000 times.
func BenchmarkApplyToExistingOrders(b *testing.B) {
	const orders = 10000
	at := time.Now()
	id := func(n int) string { return fmt.Sprintf("%08x-%d", uint32(n)*2654435761, n) }
	for _, tc := range []struct {
		name  string
		event func(i int) order.Event
	}{
		{"item", func(i int) order.Event {
			return order.ItemAdded{SKU: fmt.Sprint("S", i/orders), Quantity: 1, UnitPrice: 100}
		}},
		{"cancel", func(int) order.Event { return order.OrderCancelled{Reason: "bench"} }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			rm, err := projections.OpenReadModel(ctx, filepath.Join(b.TempDir(), "rm.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer rm.Close()
			var created []projections.Item
			for n := range orders {
				e := order.OrderCreated{OrderID: id(n), CustomerID: fmt.Sprint("c-", n%100), Currency: "EUR"}
				created = append(created, projections.Item{Rec: eventstore.Recorded{OrderID: id(n), Position: uint64(n + 1), Type: e.EventType(), Time: at}, Event: e})
			}
			for i := 0; i < orders; i += 500 {
				if _, _, err := rm.Apply(ctx, created[i:i+500]); err != nil {
					b.Fatal(err)
				}
			}
			pos := uint64(orders)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				pos++
				e := tc.event(i)
				item := projections.Item{Rec: eventstore.Recorded{OrderID: id(i % orders), Position: pos, Type: e.EventType(), Time: at}, Event: e}
				if _, dead, err := rm.Apply(ctx, []projections.Item{item}); err != nil || len(dead) > 0 {
					b.Fatal(err, dead)
				}
			}
		})
	}
}

// BenchmarkGetOrder reads orders by id from a read model of
// -getorder.orders orders with parallel readers while a writer applies a
// batch every millisecond, as GetOrder does under load: each commit makes
// the readers' snapshots move on.
func BenchmarkGetOrder(b *testing.B) {
	ctx := context.Background()
	rm, err := projections.OpenReadModel(ctx, filepath.Join(b.TempDir(), "rm.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer rm.Close()
	ids := make([]string, *getOrders)
	pos := uint64(0)
	at := time.Now()
	created := func(n int) projections.Item {
		pos++
		id := fmt.Sprintf("%08x-%d", uint32(n)*2654435761, n)
		e := order.OrderCreated{OrderID: id, CustomerID: "c", Currency: "EUR"}
		return projections.Item{Rec: eventstore.Recorded{OrderID: id, Position: pos, Type: e.EventType(), Time: at}, Event: e}
	}
	for lo := 0; lo < len(ids); lo += 1000 {
		batch := make([]projections.Item, 0, 1000)
		for n := lo; n < min(lo+1000, len(ids)); n++ {
			batch = append(batch, created(n))
			ids[n] = batch[len(batch)-1].Rec.OrderID
		}
		if _, _, err := rm.Apply(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	stop := make(chan struct{})
	writerDone := make(chan error, 1)
	go func() {
		n := len(ids)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				writerDone <- nil
				return
			case <-tick.C:
			}
			batch := []projections.Item{created(n), created(n + 1)}
			n += 2
			if _, _, err := rm.Apply(ctx, batch); err != nil {
				writerDone <- err
				return
			}
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i = (i + 7919) % len(ids)
			if _, _, err := rm.GetOrderMessage(ctx, ids[i]); err != nil {
				b.Error(err)
				return
			}
		}
	})
	close(stop)
	if err := <-writerDone; err != nil {
		b.Fatal(err)
	}
}

var getOrders = flag.Int("getorder.orders", 50000, "orders in the read model for BenchmarkGetOrder")
