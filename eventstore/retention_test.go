package eventstore_test

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
)

// A stream made beforehand with settings under which it is no log is
// brought to the log's, or refused when the server cannot change them:
// interest retention dropped every event no consumer waited for once it
// was acknowledged, and a stream without acks took every append while
// answering none, both accepted by New (the first as immutable).
func TestStreamSettingsThatLoseEventsAreChangedOrRefused(t *testing.T) {
	_, js := estest.Connect(t, estest.StartServer(t))
	ctx := t.Context()
	open := func(name string, cfg jetstream.StreamConfig) (*eventstore.Store, error) {
		t.Helper()
		cfg.Name, cfg.Subjects, cfg.Storage = name, []string{name + ".*"}, jetstream.MemoryStorage
		sealed := cfg.Sealed
		cfg.Sealed = false // a stream is sealed by an update
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		if sealed {
			cfg.Sealed = true
			if _, err := js.UpdateStream(ctx, cfg); err != nil {
				t.Fatal(err)
			}
		}
		return eventstore.New(ctx, js, eventstore.WithStreamName(name), eventstore.WithSubjectPrefix(name),
			eventstore.WithStorage(jetstream.MemoryStorage))
	}
	for name, cfg := range map[string]jetstream.StreamConfig{
		"interest": {Retention: jetstream.InterestPolicy},
		"noack":    {NoAck: true},
	} {
		s, err := open(name, cfg)
		if err != nil {
			t.Fatalf("%s: New: %v", name, err)
		}
		estest.MustAppend(t, s, "o1", 0, estest.Event("A", "", "r1"))
		if recs, err := s.Load(ctx, "o1"); err != nil || len(recs) != 1 {
			t.Errorf("%s: an acknowledged append loads as %d events, %v", name, len(recs), err)
		}
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if c := st.CachedInfo().Config; c.Retention != jetstream.LimitsPolicy || c.NoAck {
			t.Errorf("%s: the stream kept retention %v, no_ack %v", name, c.Retention, c.NoAck)
		}
	}
	for name, cfg := range map[string]jetstream.StreamConfig{
		"workqueue": {Retention: jetstream.WorkQueuePolicy},
		"sealed":    {Sealed: true},
	} {
		if _, err := open(name, cfg); !errors.Is(err, eventstore.ErrInvalidOption) {
			t.Errorf("%s: New: %v, want ErrInvalidOption", name, err)
		}
	}
}
