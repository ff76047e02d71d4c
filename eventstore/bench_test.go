package eventstore_test

import (
	"bytes"
	"flag"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
)

// Benchmarks default to file storage, as in production; memory storage
// separates the store's own cost from the disk's:
//
//	go test ./eventstore -run '^$' -bench . -benchtime=2000x -storage=memory
var benchStorage = flag.String("storage", "file", "stream storage of the benchmarks: file or memory")

func benchStore(b *testing.B) (*eventstore.Store, jetstream.JetStream) {
	b.Helper()
	st := jetstream.FileStorage
	switch *benchStorage {
	case "file":
	case "memory":
		st = jetstream.MemoryStorage
	default:
		b.Fatalf("-storage=%q: want file or memory", *benchStorage)
	}
	srv := estest.StartServer(b)
	_, js := estest.Connect(b, srv)
	s, err := eventstore.New(b.Context(), js, eventstore.WithStorage(st))
	if err != nil {
		b.Fatal(err)
	}
	return s, js
}

// benchEvent is a typical event: a small protobuf-sized payload and the
// metadata a command carries.
func benchEvent(requestID string) eventstore.EventData {
	return eventstore.EventData{
		Type: "orders.v1.OrderCreated",
		Data: bytes.Repeat([]byte{0x2a}, 200),
		Meta: eventstore.Metadata{
			RequestID:     requestID,
			CorrelationID: "0192f3b1-7c1e-7a2b-9d3c-4e5f6a7b8c9d",
			Actor:         "user:alice",
			OccurredAt:    time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
			TraceParent:   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		},
	}
}

func BenchmarkAppend(b *testing.B) {
	b.Run("new-order", func(b *testing.B) {
		s, _ := benchStore(b)
		ctx := b.Context()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			n := strconv.Itoa(i)
			if _, err := s.Append(ctx, "order-"+n, 0, []eventstore.EventData{benchEvent("req-" + n)}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sequential", func(b *testing.B) {
		s, _ := benchStore(b)
		ctx := b.Context()
		var rev uint64
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			res, err := s.Append(ctx, "order-1", rev, []eventstore.EventData{benchEvent("req-" + strconv.Itoa(i))})
			if err != nil {
				b.Fatal(err)
			}
			rev = res.Position
		}
	})
}

// BenchmarkRawPublishExpected is the floor under BenchmarkAppend: the same
// message published with nats.go alone.
func BenchmarkRawPublishExpected(b *testing.B) {
	msg := func(s *eventstore.Store, orderID, requestID string) *nats.Msg {
		ev := benchEvent(requestID)
		return &nats.Msg{
			Subject: s.Subject(orderID),
			Header: nats.Header{
				eventstore.HeaderEventType:     {ev.Type},
				eventstore.HeaderRequestID:     {requestID},
				eventstore.HeaderCorrelationID: {ev.Meta.CorrelationID},
				eventstore.HeaderActor:         {ev.Meta.Actor},
				eventstore.HeaderOccurredAt:    {ev.Meta.OccurredAt.Format(time.RFC3339Nano)},
				eventstore.HeaderTraceParent:   {ev.Meta.TraceParent},
			},
			Data: ev.Data,
		}
	}
	b.Run("new-order", func(b *testing.B) {
		s, js := benchStore(b)
		ctx := b.Context()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			n := strconv.Itoa(i)
			if _, err := js.PublishMsg(ctx, msg(s, "order-"+n, "req-"+n),
				jetstream.WithMsgID("req-"+n+":0"), jetstream.WithExpectLastSequencePerSubject(0)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sequential", func(b *testing.B) {
		s, js := benchStore(b)
		ctx := b.Context()
		var rev uint64
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			n := strconv.Itoa(i)
			ack, err := js.PublishMsg(ctx, msg(s, "order-1", "req-"+n),
				jetstream.WithMsgID("req-"+n+":0"), jetstream.WithExpectLastSequencePerSubject(rev))
			if err != nil {
				b.Fatal(err)
			}
			rev = ack.Sequence
		}
	})
}

func BenchmarkAppendBatch3(b *testing.B) {
	s, _ := benchStore(b)
	ctx := b.Context()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		n := strconv.Itoa(i)
		evs := []eventstore.EventData{benchEvent("req-" + n), benchEvent("req-" + n), benchEvent("req-" + n)}
		if _, err := s.Append(ctx, "order-"+n, 0, evs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoad loads an order of 10 events among 1,000 other orders.
func BenchmarkLoad(b *testing.B) {
	s, js := benchStore(b)
	ctx := b.Context()
	var rev uint64
	for i := range 1000 {
		n := strconv.Itoa(i)
		if _, err := s.Append(ctx, "other-"+n, 0, []eventstore.EventData{benchEvent("")}); err != nil {
			b.Fatal(err)
		}
		if i%100 == 0 {
			res, err := s.Append(ctx, "order-1", rev, []eventstore.EventData{benchEvent("")})
			if err != nil {
				b.Fatal(err)
			}
			rev = res.Position
		}
	}
	b.Run("Store.Load", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			recs, err := s.Load(ctx, "order-1")
			if err != nil || len(recs) != 10 {
				b.Fatalf("Load = %d events, %v", len(recs), err)
			}
		}
	})
	// For comparison: orbit.go's batched direct get, decoding included.
	b.Run("jetstreamext.GetBatch", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			msgs, err := jetstreamext.GetBatch(ctx, js, s.StreamName(), 1000, jetstreamext.GetBatchSubject(s.Subject("order-1")))
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for raw, err := range msgs {
				if err != nil {
					b.Fatal(err)
				}
				if _, err := eventstore.DecodeRawMsg(raw, s.SubjectPrefix()); err != nil {
					b.Fatal(err)
				}
				n++
			}
			if n != 10 {
				b.Fatalf("GetBatch = %d events", n)
			}
		}
	})
}

// BenchmarkRead reads a global log of 1,000 events; ns/op is per read of
// all of them. The ordered-consumer variant is the alternative Read does not
// use (see Read), measured with the consumer deleted after each read as it
// would have to be.
func BenchmarkRead(b *testing.B) {
	s, js := benchStore(b)
	ctx := b.Context()
	for i := range 1000 {
		if _, err := s.Append(ctx, "order-"+strconv.Itoa(i), 0, []eventstore.EventData{benchEvent("")}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("Store.Read", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n := 0
			for _, err := range s.Read(ctx, 0) {
				if err != nil {
					b.Fatal(err)
				}
				n++
			}
			if n != 1000 {
				b.Fatalf("Read = %d events", n)
			}
		}
	})
	b.Run("ordered-consumer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			cons, err := js.OrderedConsumer(ctx, s.StreamName(), jetstream.OrderedConsumerConfig{})
			if err != nil {
				b.Fatal(err)
			}
			msgs, err := cons.Messages()
			if err != nil {
				b.Fatal(err)
			}
			for range 1000 {
				m, err := msgs.Next()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := eventstore.DecodeMsg(m, s.SubjectPrefix()); err != nil {
					b.Fatal(err)
				}
			}
			msgs.Stop()
			if err := js.DeleteConsumer(ctx, s.StreamName(), cons.CachedInfo().Name); err != nil {
				b.Fatal(err)
			}
		}
	})
}
