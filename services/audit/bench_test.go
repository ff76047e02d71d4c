package audit_test

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/chain"
)

// BenchmarkExport compares exporting the log through the gRPC stream with a
// raw ordered-consumer read of the same stream, and measures VerifyLog, in
// one run over 100,000 events.
func BenchmarkExport(b *testing.B) {
	e := startB(b)
	const orders = 20000
	seedB(b, e, orders)
	n := orders * 5
	for b.Loop() {
		t0 := time.Now()
		cons, err := e.js.OrderedConsumer(b.Context(), e.nstore.StreamName(), jetstream.OrderedConsumerConfig{})
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

		t1 := time.Now()
		s, err := e.audit.StreamEvents(b.Context(), &ordersv1.StreamEventsRequest{})
		if err != nil {
			b.Fatal(err)
		}
		got := 0
		for {
			if _, err := s.Recv(); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				b.Fatal(err)
			}
			got++
		}
		if got != n {
			b.Fatalf("exported %d of %d", got, n)
		}
		export := float64(n) / time.Since(t1).Seconds()

		t2 := time.Now()
		v, err := e.audit.VerifyLog(b.Context(), &ordersv1.VerifyLogRequest{})
		if err != nil {
			b.Fatal(err)
		}
		for {
			r, err := v.Recv()
			if err != nil {
				b.Fatal(err)
			}
			if r.GetSummary() != nil {
				break
			}
		}
		verify := float64(n) / time.Since(t2).Seconds()
		b.ReportMetric(raw, "raw-events/s")
		b.ReportMetric(export, "export-events/s")
		b.ReportMetric(export/raw, "export/raw")
		b.ReportMetric(verify, "verify-events/s")
	}
}

// BenchmarkChainCompute is the hash's cost on the append path.
func BenchmarkChainCompute(b *testing.B) {
	f := chain.Fields{OrderID: "0193c1d2-aaaa-7bbb-8ccc-123456789abc", Type: "ItemAdded", OccurredAt: time.Now(), Actor: "anonymous",
		RequestID: "req-123456", Payload: make([]byte, 40)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := chain.Compute(chain.Zero, f); err != nil {
			b.Fatal(err)
		}
	}
}
