package loadgen

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
)

var serverOrders = flag.Int("server.orders", 20000, "orders appended by BenchmarkEmbeddedServer")

// BenchmarkEmbeddedServer measures what the embedded nats-server keeps in
// memory per order of the ORDERS stream, and how long it takes to start on
// that stream, for a duplicate window that still holds every append (2m)
// and one that has forgotten them (1s, measured after it passed): heap in
// use after a GC, per order (one event, with its request id as message
// id, on its own subject), and the restart to ready for connections. The
// difference between the two is the duplicate window's share; what is
// left with the 1s window is the per-subject index and the rest of the
// server's per-message state. -server.orders sets the count.
func BenchmarkEmbeddedServer(b *testing.B) {
	for _, window := range []time.Duration{2 * time.Minute, time.Second} {
		b.Run(fmt.Sprint("window=", window), func(b *testing.B) {
			for b.Loop() {
				heap, restart := embeddedServerCost(b, window, *serverOrders)
				b.ReportMetric(heap/float64(*serverOrders), "heap-B/order")
				b.ReportMetric(restart.Seconds(), "restart-s")
			}
		})
	}
}

// embeddedServerCost appends n one-event orders to a fresh ORDERS stream
// with the given duplicate window and returns the heap they added once
// the server's caches have expired, and the time a restart on the stream
// takes.
func embeddedServerCost(b *testing.B, window time.Duration, n int) (heap float64, restart time.Duration) {
	srv := estest.StartServer(b)
	base := settledHeap(0)
	func() {
		_, js := estest.Connect(b, srv)
		store, err := eventstore.New(b.Context(), js, eventstore.WithDuplicateWindow(window))
		if err != nil {
			b.Fatal(err)
		}
		appendOrders(b.Context(), b, store, n)
	}()
	// The store is garbage now; nats-server drops a block's cache some
	// seconds after its last use, and a 1s window has forgotten every id
	// by then.
	after := settledHeap(cacheExpiry)
	start := estest.Stop(b, srv)
	t0 := time.Now()
	start()
	return float64(after) - float64(base), time.Since(t0)
}

// cacheExpiry is longer than nats-server keeps a message block's cache
// after its last use.
const cacheExpiry = 11 * time.Second

// settledHeap returns the heap in use after wait, and after a GC.
func settledHeap(wait time.Duration) uint64 {
	time.Sleep(wait)
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// appendOrders creates n orders of one event each, with request ids, from
// a few concurrent writers.
func appendOrders(ctx context.Context, b *testing.B, store *eventstore.Store, n int) {
	const writers = 16
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				id := fmt.Sprintf("%08x-0000-8000-8000-%012d", uint32(i)*2654435761, i)
				ev := eventstore.EventData{Type: "OrderCreated", Data: make([]byte, 120),
					Meta: eventstore.Metadata{RequestID: fmt.Sprint("req-", i), Actor: "bench", OccurredAt: time.Now()}}
				if _, err := store.Append(ctx, id, 0, []eventstore.EventData{ev}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
