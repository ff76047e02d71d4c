package pii_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/orderstream/orderstream/internal/pii"
)

func master(t *testing.T) *pii.MasterKey {
	t.Helper()
	m, err := pii.NewMasterKey(bytes.Repeat([]byte{7}, pii.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSealOpenBindsAdditionalData(t *testing.T) {
	ring := pii.NewKeyring(pii.NewMemStore(), master(t))
	k, err := ring.DataKey(t.Context(), "c-1")
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := k.Seal([]byte("221B Baker Street"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("Baker")) {
		t.Fatal("plaintext in sealed bytes")
	}
	got, err := k.Open(sealed, []byte("ad"))
	if err != nil || string(got) != "221B Baker Street" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := k.Open(sealed, []byte("other")); !errors.Is(err, pii.ErrCorrupt) {
		t.Fatalf("Open with other ad: %v, want ErrCorrupt", err)
	}
	other, _ := ring.DataKey(t.Context(), "c-2")
	if _, err := other.Open(sealed, []byte("ad")); !errors.Is(err, pii.ErrCorrupt) {
		t.Fatalf("Open with another customer's key: %v, want ErrCorrupt", err)
	}
}

func TestForgetThenNewKey(t *testing.T) {
	ctx := t.Context()
	store := pii.NewMemStore()
	ring := pii.NewKeyring(store, master(t))
	k1, err := ring.DataKey(ctx, "c-1")
	if err != nil {
		t.Fatal(err)
	}
	if k, err := ring.Key(ctx, "c-1", k1.Version); err != nil || k.Version != k1.Version {
		t.Fatalf("Key = %v, %v", k.Version, err)
	}
	if err := ring.Forget(ctx, "c-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := ring.Key(ctx, "c-1", k1.Version); !errors.Is(err, pii.ErrForgotten) {
		t.Fatalf("Key after Forget: %v, want ErrForgotten", err)
	}
	k2, err := ring.DataKey(ctx, "c-1")
	if err != nil {
		t.Fatal(err)
	}
	if k2.Version == k1.Version {
		t.Fatal("new key has the forgotten key's version")
	}
	if _, err := ring.Key(ctx, "c-1", k1.Version); !errors.Is(err, pii.ErrForgotten) {
		t.Fatalf("old version after a new key: %v, want ErrForgotten", err)
	}
	// Another process's keyring, whose cache still held the key, drops it.
	if err := ring.Forget(ctx, "c-1"); err != nil {
		t.Fatal(err)
	}
	if err := ring.Forget(ctx, "nobody"); err != nil {
		t.Fatalf("Forget without a key: %v", err)
	}
}

func TestConcurrentCreateAgrees(t *testing.T) {
	store := pii.NewMemStore()
	m := master(t)
	var wg sync.WaitGroup
	versions := make([]uint64, 8)
	for i := range versions {
		wg.Go(func() {
			k, err := pii.NewKeyring(store, m).DataKey(context.Background(), "c-1")
			if err != nil {
				t.Error(err)
				return
			}
			versions[i] = k.Version
		})
	}
	wg.Wait()
	for _, v := range versions {
		if v != versions[0] {
			t.Fatalf("keyrings disagree on the key: %v", versions)
		}
	}
}

func TestWrongMasterKey(t *testing.T) {
	store := pii.NewMemStore()
	if _, err := pii.NewKeyring(store, master(t)).DataKey(t.Context(), "c-1"); err != nil {
		t.Fatal(err)
	}
	other, _ := pii.NewMasterKey(bytes.Repeat([]byte{8}, pii.KeySize))
	if _, err := pii.NewKeyring(store, other).DataKey(t.Context(), "c-1"); !errors.Is(err, pii.ErrCorrupt) {
		t.Fatalf("DataKey under another master key: %v, want ErrCorrupt", err)
	}
}

func TestMasterKeyFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.key")
	if err := os.WriteFile(good, []byte(strings.Repeat("ab", pii.KeySize)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := pii.LoadMasterKey(good); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.key")
	if err := os.WriteFile(bad, []byte("not hex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := pii.LoadMasterKey(bad); !errors.Is(err, pii.ErrMasterKey) {
		t.Fatalf("LoadMasterKey(bad) = %v, want ErrMasterKey", err)
	}
}

// Digest is a function of the key and the bytes alone: the same from one
// call to the next, concurrently, and from another keyring's copy of the
// key, whose HMACs come from a pool of their own.
func TestDigestIsStable(t *testing.T) {
	ctx := t.Context()
	st := pii.NewMemStore()
	k1, err := pii.NewKeyring(st, master(t)).DataKey(ctx, "c-1")
	if err != nil {
		t.Fatal(err)
	}
	k2, err := pii.NewKeyring(st, master(t)).Key(ctx, "c-1", k1.Version)
	if err != nil {
		t.Fatal(err)
	}
	want, err := k2.Digest([]byte("12 St James's Square"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if got, err := k1.Digest([]byte("12 St James's Square")); err != nil || !bytes.Equal(got, want) {
					t.Errorf("Digest = %x, %v; want %x", got, err, want)
					return
				}
				if other, _ := k1.Digest([]byte("another")); bytes.Equal(other, want) {
					t.Error("two inputs have one digest")
					return
				}
			}
		})
	}
	wg.Wait()
}
