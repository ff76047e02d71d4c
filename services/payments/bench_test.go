package payments_test

import (
	"flag"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/orderstream/orderstream/services/payments"
)

// BenchmarkPaidPerSecond measures orders paid per second end to end (log →
// worker → simulated gateway → RecordPayment → log) for pool sizes 1, 10
// and 100 at zero and 50 ms gateway latency. Orders are placed first, then
// the manager starts, so the figure is the drain rate of a backlog.
func BenchmarkPaidPerSecond(b *testing.B) {
	for _, latency := range []time.Duration{0, 50 * time.Millisecond} {
		for _, pool := range []int{1, 10, 100} {
			b.Run(fmt.Sprintf("latency=%s/pool=%d", latency, pool), func(b *testing.B) {
				orders := 300
				if latency > 0 && pool == 1 {
					orders = 40
				}
				for b.Loop() {
					e := start(b)
					for range orders {
						e.place(b, "bench", 100)
					}
					sim := payments.NewSimulator(payments.SimulatorConfig{Latency: latency})
					t0 := time.Now()
					e.run(b, sim, payments.WithWorkers(pool))
					e.waitFor(b, orders, "PaymentAuthorized")
					b.ReportMetric(float64(orders)/time.Since(t0).Seconds(), "orders/s")
				}
			})
		}
	}
}

var backlogOrders = flag.Int("backlog", 100000, "orders queued behind the slow gateway in BenchmarkBacklogMemory")

// BenchmarkBacklogMemory places a large backlog (-backlog orders) behind a
// slow gateway and reports how much the heap grows while the manager works
// through the start of it: bounded intake means it does not grow with the
// backlog.
func BenchmarkBacklogMemory(b *testing.B) {
	orders := *backlogOrders
	for b.Loop() {
		e := start(b)
		for range orders {
			e.place(b, "backlog", 100)
		}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		sim := payments.NewSimulator(payments.SimulatorConfig{Latency: 50 * time.Millisecond})
		stop := e.run(b, sim, payments.WithWorkers(10))
		e.waitFor(b, 200, "PaymentAuthorized")
		runtime.GC()
		runtime.ReadMemStats(&after)
		stop()
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/1024, "heap-growth-KiB")
		b.ReportMetric(float64(orders), "backlog-orders")
	}
}
