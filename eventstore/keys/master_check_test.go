package keys_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/eventstore/keys"
	"github.com/orderstream/orderstream/internal/pii"
)

// masterOf returns the master key of KeySize bytes b.
func masterOf(t *testing.T, b byte) *pii.MasterKey {
	t.Helper()
	m, err := pii.NewMasterKey(bytes.Repeat([]byte{b}, pii.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A master key is checked against the bucket's keys before a process uses
// it: against the check value the first process kept, or, in a bucket
// whose keys were wrapped before one was kept, against one of them. Another
// master key is refused (ErrWrongMasterKey) rather than taking every
// sealed event for altered.
func TestMasterKeyIsCheckedAgainstTheBucket(t *testing.T) {
	ctx := t.Context()
	_, js := estest.Connect(t, estest.StartServer(t))
	right, wrong := masterOf(t, 1), masterOf(t, 2)

	withKeys, err := keys.Open(ctx, js, keys.WithBucket("WITH_KEYS"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pii.NewKeyring(withKeys, right).DataKey(ctx, "c-1"); err != nil {
		t.Fatal(err)
	}
	if err := pii.CheckMasterKey(ctx, withKeys, wrong); !errors.Is(err, pii.ErrWrongMasterKey) {
		t.Fatalf("another master key on keys wrapped before the check value was kept: %v, want ErrWrongMasterKey", err)
	}
	if err := pii.CheckMasterKey(ctx, withKeys, right); err != nil {
		t.Fatalf("the keys' own master key: %v", err)
	}
	if err := pii.CheckMasterKey(ctx, withKeys, wrong); !errors.Is(err, pii.ErrWrongMasterKey) {
		t.Fatalf("another master key against the check value: %v, want ErrWrongMasterKey", err)
	}

	// A key wrapped under another master key (by a process that had the
	// wrong one) listed first does not decide for the others.
	mixed, err := keys.Open(ctx, js, keys.WithBucket("MIXED"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pii.NewKeyring(mixed, wrong).DataKey(ctx, "a-stray"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"b-1", "b-2"} {
		if _, err := pii.NewKeyring(mixed, right).DataKey(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := pii.CheckMasterKey(ctx, mixed, right); err != nil {
		t.Fatalf("the keys' own master key, a stray key listed first: %v", err)
	}

	empty, err := keys.Open(ctx, js, keys.WithBucket("EMPTY"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pii.CheckMasterKey(ctx, empty, wrong); err != nil {
		t.Fatalf("the first master key on an empty bucket: %v", err)
	}
	if err := pii.CheckMasterKey(ctx, empty, right); !errors.Is(err, pii.ErrWrongMasterKey) {
		t.Fatalf("a second master key on the bucket: %v, want ErrWrongMasterKey", err)
	}
}
