package bucket_test

import (
	"errors"
	"slices"
	"testing"

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
