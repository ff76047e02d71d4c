// Package rawbench is bare JetStream for benchmarks: the operations the
// event store is built from, without the store, so that a benchmark can
// state what the system costs above them (the "JetStream floor" of
// ordersbench). It is no part of the system: nothing but benchmarks and
// their tools use it.
//
// Stream is a stream of its own (RawStream, beside ORDERS, so the system's
// log stays clean) written the way the store appends: a publish expecting
// the subject's last sequence, reloading it after a lost race as the
// command side does on a conflict. Log reads the system's own stream
// directly.
package rawbench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// RawStream is the stream a Stream writes to, on the subjects "benchraw.*".
const RawStream = "BENCH_RAW"

// conflictRetries bounds the reloads after a lost race, as the command
// side bounds its own: two operations on one draft may race here too.
const conflictRetries = 3

var payload = make([]byte, 96) // about an encoded OrderCreated

// Stream appends to and reads RawStream with bare JetStream operations. It
// is safe for concurrent use.
type Stream struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	revs   sync.Map      // id → last sequence written
	head   atomic.Uint64 // highest sequence this Stream wrote
}

// Open connects to url and creates (or reuses) RawStream, configured like
// ORDERS: file storage, direct gets, and ORDERS' duplicate window when the
// server has that stream (DUPLICATE_WINDOW changes what a publish costs;
// the store's default otherwise). It returns the connection's or the
// server's error.
func Open(ctx context.Context, url string) (*Stream, error) {
	nc, js, err := connect(url)
	if err != nil {
		return nil, err
	}
	dup := eventstore.DefaultDuplicateWindow
	if orders, err := js.Stream(ctx, eventstore.DefaultStreamName); err == nil {
		dup = orders.CachedInfo().Config.Duplicates
	}
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: RawStream, Subjects: []string{"benchraw.*"},
		Storage: jetstream.FileStorage, AllowDirect: true, Duplicates: dup})
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &Stream{nc: nc, js: js, stream: st}, nil
}

// Close deletes RawStream, which is no part of the system's memory or disk,
// and closes the connection.
func (s *Stream) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.js.DeleteStream(ctx, RawStream)
	s.nc.Close()
	return nil
}

// Append publishes a 96-byte message on id's subject with message id rid,
// expecting the last sequence this Stream wrote there (none for a new id);
// after a lost race it reads the subject's last sequence and tries again,
// up to three times. It returns the publish's error otherwise.
func (s *Stream) Append(ctx context.Context, id, rid string) error {
	var expected uint64
	if v, ok := s.revs.Load(id); ok {
		expected = v.(uint64)
	}
	m := nats.NewMsg("benchraw." + id)
	m.Data = payload
	m.Header.Set(jetstream.MsgIDHeader, rid)
	for attempt := 0; ; attempt++ {
		ack, err := s.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(expected))
		if err == nil {
			s.revs.Store(id, ack.Sequence)
			for {
				h := s.head.Load()
				if ack.Sequence <= h || s.head.CompareAndSwap(h, ack.Sequence) {
					break
				}
			}
			return nil
		}
		if attempt == conflictRetries || !lostRace(err) {
			return err
		}
		last, err := s.stream.GetLastMsgForSubject(ctx, "benchraw."+id)
		if err != nil {
			return err
		}
		expected = last.Sequence
	}
}

func lostRace(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Last reads the last message on id's subject with a direct get, and
// returns its sequence.
func (s *Stream) Last(ctx context.Context, id string) (uint64, error) {
	m, err := s.stream.GetLastMsgForSubject(ctx, "benchraw."+id)
	if err != nil {
		return 0, err
	}
	return m.Sequence, nil
}

// Newest reads the newest n messages this Stream wrote with one batched
// direct get, as the system's list reads a page of its read model, and
// returns how many it read: none before the first Append.
func (s *Stream) Newest(ctx context.Context, n int) (int, error) {
	seq := s.head.Load()
	if seq == 0 {
		return 0, nil
	}
	from := uint64(1)
	if seq > uint64(n) {
		from = seq - uint64(n) + 1
	}
	msgs, err := jetstreamext.GetBatch(ctx, s.js, RawStream, n, jetstreamext.GetBatchSeq(from))
	if err != nil {
		return 0, err
	}
	read := 0
	for _, err := range msgs {
		if err != nil {
			return read, err
		}
		read++
	}
	return read, nil
}

// Log reads a stream of the system (ORDERS) directly, beside the system.
type Log struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	name string
}

// OpenLog connects to url to read the stream name.
func OpenLog(url, name string) (*Log, error) {
	nc, js, err := connect(url)
	if err != nil {
		return nil, err
	}
	return &Log{nc: nc, js: js, name: name}, nil
}

func connect(url string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// Close closes the connection.
func (l *Log) Close() { l.nc.Close() }

// Size returns how many messages the stream holds and their bytes.
func (l *Log) Size(ctx context.Context) (msgs, bytes uint64, err error) {
	st, err := l.js.Stream(ctx, l.name)
	if err != nil {
		return 0, 0, fmt.Errorf("stream %s: %w", l.name, err)
	}
	state := st.CachedInfo().State
	return state.Msgs, state.Bytes, nil
}

// ReadRate reads the first n messages of the stream through an ordered
// consumer, nothing else, and returns messages per second: what a rebuild
// is compared with.
func (l *Log) ReadRate(ctx context.Context, n uint64) (float64, error) {
	t0 := time.Now()
	cons, err := l.js.OrderedConsumer(ctx, l.name, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return 0, err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(10000))
	if err != nil {
		return 0, err
	}
	defer it.Stop()
	for range n {
		if _, err := it.Next(); err != nil {
			return 0, err
		}
	}
	return float64(n) / time.Since(t0).Seconds(), nil
}
