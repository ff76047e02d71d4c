package bucket

import (
	"errors"
	"slices"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
)

// A listing whose watch ends before it said it had every key (its channel
// closed, as nats.go closes it when the watch's subscription does) is
// ErrUnavailable, not the keys it had so far: nats.go's own lister ended as
// quietly then as at the end, and a caller listed part of the parked jobs
// as all of them.
func TestListingCutShortIsUnavailable(t *testing.T) {
	ctx := t.Context()
	_, js := estest.Connect(t, estest.StartServer(t))
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "TEST"})
	if err != nil {
		t.Fatal(err)
	}
	var entries []jetstream.KeyValueEntry
	for _, k := range []string{"a", "b"} {
		if _, err := kv.Put(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
		e, err := kv.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
	}
	updates := func(end bool) <-chan jetstream.KeyValueEntry {
		ch := make(chan jetstream.KeyValueEntry, len(entries)+1)
		for _, e := range entries {
			ch <- e
		}
		if end {
			ch <- nil // every key delivered
		} else {
			close(ch) // the watch ended first
		}
		return ch
	}
	if keys, err := collectKeys(ctx, updates(true)); err != nil || !slices.Equal(keys, []string{"a", "b"}) {
		t.Fatalf("a whole listing: %v, %v", keys, err)
	}
	if keys, err := collectKeys(ctx, updates(false)); !errors.Is(err, eventstore.ErrUnavailable) || keys != nil {
		t.Fatalf("a listing cut short: %v, %v; want no keys, ErrUnavailable", keys, err)
	}
}
