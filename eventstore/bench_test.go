package eventstore_test

import (
	"bytes"
	"context"
	"flag"
	"strconv"
	"strings"
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

// rawMsg is the message Append sends for benchEvent as the first event of
// its order, built by EncodeEvent and sent with nats.go alone: the same
// headers (the message id aside, which the caller adds), and payload.
func rawMsg(s *eventstore.Store, orderID, requestID string) *nats.Msg {
	ev := benchEvent(requestID)
	h, _, err := eventstore.EncodeEvent(ev, 1)
	if err != nil {
		panic(err) // benchEvent is a valid event
	}
	return &nats.Msg{Subject: s.Subject(orderID), Header: h, Data: ev.Data}
}

// BenchmarkAppendVsRaw compares one Store.Append with its floor, a raw
// PublishMsg of the same message with an expected last subject sequence, on
// the same server and stream in the same run, alternating call by call so
// that both see the same disk, cache and neighbours. ns/op covers one call
// of each; store-µs and raw-µs are the mean of each, store/raw their ratio:
//
//	go test ./eventstore -run '^$' -bench AppendVsRaw -benchtime 5000x
//
// new-order appends to a new order each time (expected revision 0);
// sequential appends to one order (store) and one subject (raw), each
// after its own last event.
func BenchmarkAppendVsRaw(b *testing.B) {
	s, js := benchStore(b)
	ctx := b.Context()
	report := func(b *testing.B, n int, store, raw time.Duration) {
		b.ReportMetric(float64(store.Microseconds())/float64(n), "store-µs")
		b.ReportMetric(float64(raw.Microseconds())/float64(n), "raw-µs")
		b.ReportMetric(store.Seconds()/raw.Seconds(), "store/raw")
	}
	runs := 0
	for _, sequential := range []bool{false, true} {
		kind := "new-order"
		if sequential {
			kind = "sequential"
		}
		b.Run(kind, func(b *testing.B) {
			// With -count the sub-benchmark runs again on the same stream:
			// its orders must be new ones.
			runs++
			name := kind + strconv.Itoa(runs)
			var storeRev, rawRev uint64
			var inStore, inRaw time.Duration
			viaStore := func(i int) {
				n := strconv.Itoa(i)
				id, rev := "store-"+name+"-"+n, uint64(0)
				if sequential {
					id, rev = "store-"+name, storeRev
				}
				t0 := time.Now()
				res, err := s.Append(ctx, id, rev, []eventstore.EventData{benchEvent("store-" + name + "-" + n)})
				inStore += time.Since(t0)
				if err != nil {
					b.Fatal(err)
				}
				storeRev = res.Position
			}
			viaRaw := func(i int) {
				n := strconv.Itoa(i)
				id, rev := "raw-"+name+"-"+n, uint64(0)
				if sequential {
					id, rev = "raw-"+name, rawRev
				}
				rid := "raw-" + name + "-" + n
				t0 := time.Now()
				ack, err := js.PublishMsg(ctx, rawMsg(s, id, rid), jetstream.WithMsgID(rid+":0"), jetstream.WithExpectLastSequencePerSubject(rev))
				inRaw += time.Since(t0)
				if err != nil {
					b.Fatal(err)
				}
				rawRev = ack.Sequence
			}
			n := 0
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				// Alternate which goes first, so neither always follows the other.
				if i%2 == 0 {
					viaStore(i)
					viaRaw(i)
				} else {
					viaRaw(i)
					viaStore(i)
				}
				n++
			}
			report(b, n, inStore, inRaw)
		})
	}
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
			rev = res.Version
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

// BenchmarkLoadSpread loads an order of two events with gap other
// orders' events between them. The server finds an order's next event by
// scanning the messages after the previous one in their block, so a load
// costs more the more was written in between; this is why the command
// service keeps recent histories instead of reading them again. Asking only
// for what follows the order's last event (LoadLatestAfter, as a reader
// that holds the history up to there does) costs the same at every gap.
func BenchmarkLoadSpread(b *testing.B) {
	for _, gap := range []int{10, 1000, 10000} {
		b.Run("gap="+strconv.Itoa(gap), func(b *testing.B) {
			s, _ := benchStore(b)
			ctx := b.Context()
			if _, err := s.Append(ctx, "spread", 0, []eventstore.EventData{benchEvent("")}); err != nil {
				b.Fatal(err)
			}
			for i := range gap {
				if _, err := s.Append(ctx, "other-"+strconv.Itoa(i), 0, []eventstore.EventData{benchEvent("")}); err != nil {
					b.Fatal(err)
				}
			}
			last, err := s.Append(ctx, "spread", 1, []eventstore.EventData{benchEvent("")})
			if err != nil {
				b.Fatal(err)
			}
			// The store appended both events, so it knows their positions
			// (see trailAfter); LoadUnseen is the load of a store that does
			// not, which reads by subject.
			b.Run("Load", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if recs, err := s.Load(ctx, "spread"); err != nil || len(recs) != 2 {
						b.Fatalf("Load = %d events, %v", len(recs), err)
					}
				}
			})
			b.Run("LoadUnseen", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					eventstore.SetTrail(s, "spread", nil)
					if recs, err := s.Load(ctx, "spread"); err != nil || len(recs) != 2 {
						b.Fatalf("Load = %d events, %v", len(recs), err)
					}
				}
			})
			b.Run("LoadLatestAfterLast", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if recs, err := s.LoadLatestAfter(ctx, "spread", last.Position); err != nil || len(recs) != 0 {
						b.Fatalf("LoadLatestAfter = %d events, %v", len(recs), err)
					}
				}
			})
		})
	}
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

// BenchmarkLoadLatest compares Load (direct gets, any replica answers)
// with LoadLatest (the same, confirmed with the stream leader) for an order
// of 10 events, on a single server and on a three-server cluster with an R3
// stream; ns/op is per load:
//
//	go test ./eventstore -run '^$' -bench LoadLatest -benchtime=2000x
func BenchmarkLoadLatest(b *testing.B) {
	for _, setup := range []struct {
		name  string
		store func(b *testing.B) *eventstore.Store
	}{
		{"single", func(b *testing.B) *eventstore.Store { s, _ := benchStore(b); return s }},
		{"R3", benchR3Store},
	} {
		b.Run(setup.name, func(b *testing.B) {
			s := setup.store(b)
			ctx := b.Context()
			var rev uint64
			for range 10 {
				res, err := s.Append(ctx, "order-1", rev, []eventstore.EventData{benchEvent("")})
				if err != nil {
					b.Fatal(err)
				}
				rev = res.Position
			}
			for _, l := range []struct {
				name string
				load func(context.Context, string) ([]eventstore.Recorded, error)
			}{{"Load", s.Load}, {"LoadLatest", s.LoadLatest}} {
				name, load := l.name, l.load
				b.Run(name, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						if recs, err := load(ctx, "order-1"); err != nil || len(recs) != 10 {
							b.Fatalf("%s = %d events, %v", name, len(recs), err)
						}
					}
				})
			}
		})
	}
}

// benchR3Store opens a store with three replicas on a three-server cluster,
// connected to all of them.
func benchR3Store(b *testing.B) *eventstore.Store {
	_, js := estest.ConnectURL(b, estest.StartCluster(b, 3).URLs())
	return estest.ReplicatedStore(b, js)
}

// BenchmarkEncodeEvent is the headers of one event as a command writes
// it (every metadata field, the hash chain, a trace context), built once
// per append.
//
//	go test ./eventstore -run '^$' -bench EncodeEvent -benchmem
func BenchmarkEncodeEvent(b *testing.B) {
	hash := strings.Repeat("ab", 32)
	ev := eventstore.EventData{Type: "OrderCreated", Data: make([]byte, 300), Meta: eventstore.Metadata{
		RequestID: "req-0123456789abcdef", RequestFingerprint: hash, CorrelationID: "req-0123456789abcdef",
		CausationID: "req-0123456789abcdef", Actor: "clerk:bench", OccurredAt: time.Date(2026, 12, 5, 17, 0, 0, 123456789, time.UTC),
		TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", Hash: hash, PrevHash: hash,
	}}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := eventstore.EncodeEvent(ev, 7); err != nil {
			b.Fatal(err)
		}
	}
}
