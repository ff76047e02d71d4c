package keys_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/eventstore/keys"
	"github.com/orderstream/orderstream/internal/pii"
)

// A key made while the customer's erase runs, between its secure deletes
// and its marker, is overwritten on disk as the first was. Before, the
// marker, written over it, pushed it out of the bucket (one message per
// customer) as an ordinary removal: its bytes stayed in the block file,
// where a second erase, finding only the marker, never reached them.
func TestKeyMadeDuringAnEraseIsOverwrittenOnDisk(t *testing.T) {
	ctx := t.Context()
	srv := estest.StartServer(t)
	_, js := estest.Connect(t, srv)
	eraser, err := keys.Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	_, js2 := estest.Connect(t, srv)
	other, err := keys.Open(ctx, js2) // another process
	if err != nil {
		t.Fatal(err)
	}
	first := bytes.Repeat([]byte("first-wrapped-key:"), 3)
	second := bytes.Repeat([]byte("second-wrapped-key:"), 3)
	if _, err := eraser.Create(ctx, "c1", first); err != nil {
		t.Fatal(err)
	}
	eraser.AfterFirstSecureDelete(func() {
		if _, err := other.Create(ctx, "c1", second); err != nil {
			t.Errorf("the key made during the erase: %v", err)
		}
	})
	if err := eraser.Erase(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := other.GetLatest(ctx, "c1"); !errors.Is(err, pii.ErrNotFound) {
		t.Fatalf("after the erase: %v, want no key", err)
	}
	for name, key := range map[string][]byte{"first": first, "made during the erase": second} {
		if hits := filesHolding(t, srv.StoreDir(), key); len(hits) > 0 {
			t.Errorf("the key %s is still on disk, in %v", name, hits)
		}
	}
}
