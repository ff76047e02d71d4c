package bucket_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/bucket"
	"github.com/orderstream/orderstream/eventstore/estest"
)

func TestBucket(t *testing.T) {
	_, js := estest.Connect(t, estest.StartServer(t))
	ctx := t.Context()
	b, err := bucket.Open(ctx, js, "TEST", bucket.WithDescription("test"))
	if err != nil {
		t.Fatal(err)
	}
	if keys, err := b.Keys(ctx); err != nil || len(keys) != 0 {
		t.Fatalf("Keys of a new bucket: %v, %v", keys, err)
	}
	if err := b.Create(ctx, "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := b.Create(ctx, "a", []byte("2")); !errors.Is(err, bucket.ErrExists) {
		t.Fatalf("Create of an existing key: %v, want ErrExists", err)
	}
	if err := b.Put(ctx, "a", []byte("3")); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, "b", []byte("4")); err != nil {
		t.Fatal(err)
	}
	if v, err := b.Get(ctx, "a"); err != nil || string(v) != "3" {
		t.Fatalf("Get(a) = %q, %v; want the last put", v, err)
	}
	keys, err := b.Keys(ctx)
	slices.Sort(keys)
	if err != nil || !slices.Equal(keys, []string{"a", "b"}) {
		t.Fatalf("Keys = %v, %v", keys, err)
	}
	if err := b.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "a"); !errors.Is(err, bucket.ErrNotFound) {
		t.Fatalf("Get of a deleted key: %v, want ErrNotFound", err)
	}
	if err := b.Create(ctx, "a", []byte("5")); err != nil {
		t.Fatalf("Create of a deleted key: %v", err)
	}
	// Opening again keeps what the bucket holds.
	if b, err = bucket.Open(ctx, js, "TEST"); err != nil {
		t.Fatal(err)
	}
	if keys, err := b.Keys(ctx); err != nil || len(keys) != 2 {
		t.Fatalf("Keys after reopening: %v, %v", keys, err)
	}
	if _, err := bucket.Open(ctx, js, "bad name"); err == nil {
		t.Fatal(`Open accepted the name "bad name"`)
	}
}

// An option given a value it does not accept makes Open fail with
// ErrInvalidOption before anything is created.
func TestInvalidOptionsAreRejected(t *testing.T) {
	for name, opt := range map[string]bucket.Option{
		"zero replicas": bucket.WithReplicas(0),
		"six replicas":  bucket.WithReplicas(6),
	} {
		if b, err := bucket.Open(t.Context(), nil, "TEST", opt); !errors.Is(err, bucket.ErrInvalidOption) || b != nil {
			t.Errorf("%s: Open = %v, %v; want nil, ErrInvalidOption", name, b, err)
		}
	}
}

// On a cluster the bucket is replicated like the log beside it, so the
// loss of the server leading it loses no record and leaves the records
// readable. A bucket made before with one replica (by a build that did not
// replicate it, or a start with fewer replicas) is scaled up by the next
// Open.
func TestReplicatedBucketSurvivesLeaderLoss(t *testing.T) {
	c := estest.StartCluster(t, 3)
	_, js := estest.ConnectURL(t, c.URLs())
	estest.ReplicatedStore(t, js) // the cluster has elected its meta leader
	ctx := t.Context()
	b, err := bucket.Open(ctx, js, "PARKED")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, "order-1", []byte("parked job")); err != nil {
		t.Fatal(err)
	}
	if b, err = bucket.Open(ctx, js, "PARKED", bucket.WithReplicas(3)); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "KV_PARKED")
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().Config.Replicas; n != 3 {
		t.Fatalf("the bucket has %d replica(s) after Open WithReplicas(3), want 3", n)
	}
	leader := currentLeader(t, st)

	c.Stop(c.Index(leader))
	var got []byte
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		got, err = b.Get(gctx, "order-1")
		cancel()
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || string(got) != "parked job" {
		t.Fatalf("Get with the bucket's leader %s down = %q, %v; want the record", leader, got, err)
	}
}

// currentLeader waits until both other replicas of st have caught up with
// its leader, so that losing the leader loses nothing, and returns the
// leader's name.
func currentLeader(t *testing.T, st jetstream.Stream) string {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		si, err := st.Info(t.Context())
		if err == nil && si.Cluster != nil && si.Cluster.Leader != "" && len(si.Cluster.Replicas) == 2 {
			current := true
			for _, r := range si.Cluster.Replicas {
				current = current && r.Current && !r.Offline
			}
			if current {
				return si.Cluster.Leader
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bucket's replicas did not catch up: %+v, %v", si, err)
		}
	}
}

// Of concurrent takes of one value (a read, then a removal at the revision
// read, as a settle of a parked payment does), one gets it; the others
// find it gone or changed (their removal is refused), and the key holds
// no value after.
func TestTakeGivesAValueOnce(t *testing.T) {
	ctx := t.Context()
	_, js := estest.Connect(t, estest.StartServer(t))
	b, err := bucket.Open(ctx, js, "TAKE")
	if err != nil {
		t.Fatal(err)
	}
	take := func() ([]byte, error) {
		v, rev, err := b.Read(ctx, "k")
		if err != nil {
			return nil, err
		}
		return v, b.DeleteAt(ctx, "k", rev)
	}
	if _, err := take(); !errors.Is(err, bucket.ErrNotFound) {
		t.Fatalf("Take of a key without a value: %v, want ErrNotFound", err)
	}
	if err := b.Create(ctx, "k", []byte("job")); err != nil {
		t.Fatal(err)
	}
	const n = 8
	got := make(chan error, n)
	for range n {
		go func() {
			v, err := take()
			if err == nil && string(v) != "job" {
				err = errors.New("took " + string(v))
			}
			got <- err
		}()
	}
	took := 0
	for range n {
		switch err := <-got; {
		case err == nil:
			took++
		case !errors.Is(err, bucket.ErrNotFound) && !errors.Is(err, bucket.ErrChanged):
			t.Errorf("a Take that lost: %v, want ErrNotFound or ErrChanged", err)
		}
	}
	if took != 1 {
		t.Fatalf("%d Takes got the value, want 1", took)
	}
	if _, err := b.Get(ctx, "k"); !errors.Is(err, bucket.ErrNotFound) {
		t.Fatalf("after the Takes: %v, want no value", err)
	}
}

// A write or removal conditioned on the revision read goes through only if
// nobody wrote or removed the value since, and one refused leaves the value
// as it was.
func TestUpdateAndDeleteAtAreRefusedOnceTheValueChanged(t *testing.T) {
	ctx := t.Context()
	_, js := estest.Connect(t, estest.StartServer(t))
	b, err := bucket.Open(ctx, js, "COND")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Read(ctx, "k"); !errors.Is(err, bucket.ErrNotFound) {
		t.Fatalf("Read of a key without a value: %v, want ErrNotFound", err)
	}
	if err := b.Create(ctx, "k", []byte("1")); err != nil {
		t.Fatal(err)
	}
	v, read, err := b.Read(ctx, "k")
	if err != nil || string(v) != "1" {
		t.Fatalf("Read = %q, %v; want 1", v, err)
	}
	updated, err := b.Update(ctx, "k", []byte("2"), read)
	if err != nil {
		t.Fatalf("Update at the revision read: %v", err)
	}
	if _, err := b.Update(ctx, "k", []byte("3"), read); !errors.Is(err, bucket.ErrChanged) {
		t.Fatalf("Update at a revision written over: %v, want ErrChanged", err)
	}
	if err := b.DeleteAt(ctx, "k", read); !errors.Is(err, bucket.ErrChanged) {
		t.Fatalf("DeleteAt a revision written over: %v, want ErrChanged", err)
	}
	if v, rev, err := b.Read(ctx, "k"); err != nil || string(v) != "2" || rev != updated {
		t.Fatalf("after the refusals: %q at %d, %v; want 2 at %d", v, rev, err, updated)
	}
	if err := b.DeleteAt(ctx, "k", updated); err != nil {
		t.Fatalf("DeleteAt the revision written: %v", err)
	}
	if _, err := b.Update(ctx, "k", []byte("4"), updated); !errors.Is(err, bucket.ErrChanged) {
		t.Fatalf("Update of a removed value: %v, want ErrChanged", err)
	}
	if _, err := b.Get(ctx, "k"); !errors.Is(err, bucket.ErrNotFound) {
		t.Fatalf("after the removal: %v, want no value", err)
	}
}

// With its server gone, the bucket's reads fail with
// eventstore.ErrUnavailable, as the event store's do: their callers answer
// UNAVAILABLE (retry later), not INTERNAL, nor DEADLINE_EXCEEDED for the
// NATS client's own timeout when the caller set none. A write that timed
// out is not: it may have been applied, and a retry would be answered as
// if it had not.
func TestBucketWithoutItsServerIsUnavailable(t *testing.T) {
	srv := estest.StartServer(t)
	_, js := estest.Connect(t, srv)
	b, err := bucket.Open(t.Context(), js, "TEST")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Put(t.Context(), "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	estest.Stop(t, srv)
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	for name, op := range map[string]func() error{
		"Get":  func() error { _, err := b.Get(ctx, "a"); return err },
		"Keys": func() error { _, err := b.Keys(ctx); return err },
	} {
		if err := op(); !errors.Is(err, eventstore.ErrUnavailable) {
			t.Errorf("%s without the server: %v, want eventstore.ErrUnavailable", name, err)
		}
	}
	if err := b.Put(ctx, "a", []byte("2")); err == nil || errors.Is(err, eventstore.ErrUnavailable) {
		t.Errorf("Put timed out without the server: %v, want an error that is not ErrUnavailable", err)
	}
}

// Remove takes a key out of the bucket leaving nothing behind: the
// bucket's stream holds no message for it, where Delete leaves a marker
// for good. It leaves the other keys alone, and a key that would be a
// wildcard in a subject filter is refused rather than removing others.
func TestRemoveLeavesNoMarker(t *testing.T) {
	_, js := estest.Connect(t, estest.StartServer(t))
	ctx := t.Context()
	b, err := bucket.Open(ctx, js, "REMOVE")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"sent.a.1", "sent.a.2", "kept"} {
		if err := b.Put(ctx, k, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"sent.a.1", "sent.a.2", "never.written"} {
		if err := b.Remove(ctx, k); err != nil {
			t.Fatalf("Remove(%s): %v", k, err)
		}
	}
	for _, k := range []string{"sent.*", "sent.>", "", "a..b", "a b"} {
		if err := b.Remove(ctx, k); !errors.Is(err, bucket.ErrInvalidKey) {
			t.Fatalf("Remove(%q): %v, want ErrInvalidKey", k, err)
		}
	}
	if _, err := b.Get(ctx, "sent.a.1"); !errors.Is(err, bucket.ErrNotFound) {
		t.Fatalf("Get of a removed key: %v, want ErrNotFound", err)
	}
	if keys, err := b.Keys(ctx); err != nil || !slices.Equal(keys, []string{"kept"}) {
		t.Fatalf("Keys = %v, %v; want only the key not removed", keys, err)
	}
	st, err := js.Stream(ctx, "KV_REMOVE")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("the bucket's stream holds %d messages, want the kept key's alone", info.State.Msgs)
	}
	if err := b.Delete(ctx, "kept"); err != nil {
		t.Fatal(err)
	}
	if info, err = st.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Fatalf("after Delete the stream holds %v messages (%v), want its marker", info.State.Msgs, err)
	}
}

// Opening a bucket changes nothing a build before it could not take: it
// opens, after this build did, with the configuration that build asks for
// (CreateOrUpdateKeyValue without message TTLs). A bucket made to allow
// message TTLs can never be made to refuse them again, and such a build
// could no longer start (a rolling upgrade, a rollback).
func TestBucketStaysOpenableByTheBuildBefore(t *testing.T) {
	_, js := estest.Connect(t, estest.StartServer(t))
	ctx := t.Context()
	if _, err := bucket.Open(ctx, js, "PAYMENTS_PARKED", bucket.WithDescription("d")); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "PAYMENTS_PARKED", Description: "d", History: 1, Replicas: 1}); err != nil {
		t.Fatalf("the build before's open of a bucket this build opened: %v", err)
	}
}
