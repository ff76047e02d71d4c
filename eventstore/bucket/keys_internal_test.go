package bucket

import (
	"errors"
	"slices"
	"testing"
	"time"

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
	if keys, err := collectKeys(ctx, updates(true), time.Hour, nil); err != nil || !slices.Equal(keys, []string{"a", "b"}) {
		t.Fatalf("a whole listing: %v, %v", keys, err)
	}
	if keys, err := collectKeys(ctx, updates(false), time.Hour, nil); !errors.Is(err, eventstore.ErrUnavailable) || keys != nil {
		t.Fatalf("a listing cut short: %v, %v; want no keys, ErrUnavailable", keys, err)
	}
}

// A key removed without a marker (Remove) after the watch counted what it
// had to deliver, and before it delivered it, is never delivered, and
// nats.go never says the listing is whole: it waited for ever on a bucket
// nobody wrote to (a console's operations page hung on its parked jobs).
// Once its watch is quiet the listing asks the stream whether anything is
// left to come, and ends when nothing is.
func TestListingWhoseLastKeyWentUnseenEnds(t *testing.T) {
	ctx := t.Context()
	_, js := estest.Connect(t, estest.StartServer(t))
	b, err := Open(ctx, js, "TEST")
	if err != nil {
		t.Fatal(err)
	}
	var seen []jetstream.KeyValueEntry // what the watch delivered: a and b
	for _, k := range []string{"a", "b", "c"} {
		if err := b.Put(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
		if e, err := b.kv.Get(ctx, k); err != nil {
			t.Fatal(err)
		} else if k != "c" {
			seen = append(seen, e)
		}
	}
	last := seen[len(seen)-1].Revision()
	if left, err := b.more(ctx, last); err != nil || !left {
		t.Fatalf("more after b while c is there: %v, %v; want true", left, err)
	}
	if err := b.Remove(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	updates := make(chan jetstream.KeyValueEntry, len(seen))
	for _, e := range seen {
		updates <- e
	}
	// No nil, and the channel stays open: the watch is quiet.
	keys, err := collectKeys(ctx, updates, time.Millisecond, b.more)
	if err != nil || !slices.Equal(keys, []string{"a", "b"}) {
		t.Fatalf("a listing whose last key was removed unseen: %v, %v; want a and b", keys, err)
	}
	// And a whole listing of the bucket, through its watch.
	if keys, err := b.Keys(ctx); err != nil || !slices.Equal(keys, []string{"a", "b"}) {
		t.Fatalf("Keys: %v, %v; want a and b", keys, err)
	}
}
