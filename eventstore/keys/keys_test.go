package keys_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/eventstore/keys"
	"github.com/orderstream/orderstream/internal/pii"
)

// filesHolding returns the files under dir whose bytes contain needle.
func filesHolding(t *testing.T, dir string, needle []byte) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, needle) {
			hits = append(hits, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

func TestEraseOverwritesTheBytesOnDisk(t *testing.T) {
	ctx := t.Context()
	srv, js, store := openStore(t)
	// Values the scan can recognise: stand-ins for wrapped keys.
	gone := bytes.Repeat([]byte("forget-me-wrapped-key:"), 3)
	kept := bytes.Repeat([]byte("keep-me-wrapped-key:"), 3)
	v1, err := store.Create(ctx, "customer/1", gone)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(ctx, "customer/1", kept); !errors.Is(err, pii.ErrExists) {
		t.Fatalf("second Create: %v, want ErrExists", err)
	}
	if _, err := store.Create(ctx, "customer/2", kept); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Open(ctx, js); err != nil {
		t.Fatalf("reopening the bucket: %v", err)
	}
	dir := srv.StoreDir()
	if len(filesHolding(t, dir, gone)) == 0 {
		t.Fatal("the scan does not find the stored value before the erase")
	}
	erased := make(chan string, 8)
	wctx, stop := context.WithCancel(ctx)
	watching, err := store.WatchErased(wctx, func(id string) { erased <- id }, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(); <-watching })
	if err := store.Erase(ctx, "customer/1"); err != nil {
		t.Fatal(err)
	}
	told(t, erased, "customer/1", "the erase")
	if hits := filesHolding(t, dir, gone); len(hits) > 0 {
		t.Fatalf("erased key's bytes still on disk in %v", hits)
	}
	if _, _, err := store.Get(ctx, "customer/1"); !errors.Is(err, pii.ErrNotFound) {
		t.Fatalf("Get after Erase: %v, want ErrNotFound", err)
	}
	if got, _, err := store.Get(ctx, "customer/2"); err != nil || !bytes.Equal(got, kept) {
		t.Fatalf("other customer's key: %q, %v", got, err)
	}
	if err := store.Erase(ctx, "customer/1"); err != nil {
		t.Fatalf("Erase of an erased key: %v", err)
	}
	// Told before the new key is made: the key replaces the marker (one
	// message per customer), and a marker replaced before the watch's
	// consumer reached it is never delivered.
	told(t, erased, "customer/1", "the second erase")
	v2, err := store.Create(ctx, "customer/1", kept)
	if err != nil {
		t.Fatalf("Create after Erase: %v", err)
	}
	if v2 <= v1 {
		t.Fatalf("new version %d not above the erased %d", v2, v1)
	}
	// A key created is told too: a watch that missed the marker still
	// learns that a cached key of the customer is stale.
	told(t, erased, "customer/1", "the new key")
}

// openStore opens the keys bucket on a server of its own.
func openStore(t *testing.T) (*server.Server, jetstream.JetStream, *keys.Store) {
	t.Helper()
	srv := estest.StartServer(t)
	_, js := estest.Connect(t, srv)
	store, err := keys.Open(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	return srv, js, store
}

// told waits for the watch to tell of customer id, after what; it fails t
// when the watch tells of another, or of none within 10 s.
func told(t *testing.T, watch <-chan string, id, what string) {
	t.Helper()
	select {
	case got := <-watch:
		if got != id {
			t.Fatalf("%s: the watch told of %q, want %q", what, got, id)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the watch did not tell of %s", what)
	}
}

func TestDevMasterKeyIsShared(t *testing.T) {
	srv := estest.StartServer(t)
	_, js := estest.Connect(t, srv)
	a, err := keys.Open(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	b, err := keys.Open(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	k1, created1, err := a.DevMasterKey(t.Context())
	if err != nil || !created1 || len(k1) != pii.KeySize {
		t.Fatalf("first DevMasterKey: %d bytes, created %v, %v", len(k1), created1, err)
	}
	k2, created2, err := b.DevMasterKey(t.Context())
	if err != nil || created2 || !bytes.Equal(k1, k2) {
		t.Fatalf("second process's DevMasterKey differs (created %v, %v)", created2, err)
	}
}

// An erase retried after one that overwrote the key but stopped before its
// delete marker still writes the marker, which is what tells other
// processes' keyrings to drop the key they hold.
func TestRetriedEraseStillTellsTheWatchers(t *testing.T) {
	ctx := t.Context()
	_, js, store := openStore(t)
	rev, err := store.Create(ctx, "customer/1", []byte("wrapped-key-stand-in"))
	if err != nil {
		t.Fatal(err)
	}
	erased := make(chan string, 4)
	if _, err := store.WatchErased(ctx, func(id string) { erased <- id }, nil); err != nil {
		t.Fatal(err)
	}
	// The first erase's overwrite, and nothing after it.
	st, err := js.Stream(ctx, "KV_"+keys.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SecureDeleteMsg(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if err := store.Erase(ctx, "customer/1"); err != nil {
		t.Fatal(err)
	}
	told(t, erased, "customer/1", "the retried erase (its delete marker)")
}

// GetLatest answers as Get does: the key and its version, then, once
// erased, none (the erase's marker is no key). That the leader answers it
// matters on a replicated bucket, which one server cannot show.
func TestGetLatest(t *testing.T) {
	ctx := t.Context()
	_, _, store := openStore(t)
	if _, _, err := store.GetLatest(ctx, "customer/none"); !errors.Is(err, pii.ErrNotFound) {
		t.Fatalf("GetLatest of no key: %v, want ErrNotFound", err)
	}
	v, err := store.Create(ctx, "customer/1", []byte("wrapped-key-stand-in"))
	if err != nil {
		t.Fatal(err)
	}
	w, lv, err := store.GetLatest(ctx, "customer/1")
	if err != nil || string(w) != "wrapped-key-stand-in" || lv != v {
		t.Fatalf("GetLatest = %q at %d, %v; want the key at %d", w, lv, err, v)
	}
	if err := store.Erase(ctx, "customer/1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.GetLatest(ctx, "customer/1"); !errors.Is(err, pii.ErrNotFound) {
		t.Fatalf("GetLatest after the erase: %v, want ErrNotFound", err)
	}
}

// A customer id too long for a NATS subject is refused before anything is
// sent: the server would answer the protocol line with an error that
// closes the connection, which the event store shares, for good. The
// longest accepted id works, and the connection stays usable.
func TestOverlongCustomerIDIsRefusedBeforeTheServer(t *testing.T) {
	ctx := t.Context()
	nc, js := estest.Connect(t, estest.StartServer(t))
	store, err := keys.Open(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("c", keys.MaxCustomerID+1)
	if _, _, err := store.Get(ctx, long); !errors.Is(err, keys.ErrCustomerIDTooLong) {
		t.Errorf("Get: %v, want ErrCustomerIDTooLong", err)
	}
	if _, _, err := store.GetLatest(ctx, long); !errors.Is(err, keys.ErrCustomerIDTooLong) {
		t.Errorf("GetLatest: %v, want ErrCustomerIDTooLong", err)
	}
	if _, err := store.Create(ctx, long, []byte("k")); !errors.Is(err, keys.ErrCustomerIDTooLong) {
		t.Errorf("Create: %v, want ErrCustomerIDTooLong", err)
	}
	if err := store.Erase(ctx, long); !errors.Is(err, keys.ErrCustomerIDTooLong) {
		t.Errorf("Erase: %v, want ErrCustomerIDTooLong", err)
	}
	longest := strings.Repeat("c", keys.MaxCustomerID)
	if _, err := store.Create(ctx, longest, []byte("k")); err != nil {
		t.Fatalf("Create with the longest id: %v", err)
	}
	if w, _, err := store.GetLatest(ctx, longest); err != nil || string(w) != "k" {
		t.Fatalf("GetLatest with the longest id: %q, %v", w, err)
	}
	if err := store.Erase(ctx, longest); err != nil {
		t.Fatalf("Erase with the longest id: %v", err)
	}
	if !nc.IsConnected() {
		t.Fatalf("connection %v after the calls", nc.Status())
	}
}

// A watch the server will not make again (here its consumer is deleted
// while the account is at its consumer limit, so nats.go gives the ordered
// consumer up after its missed heartbeats) is made again once the server
// allows it; every cached key is dropped when the loss is seen and again
// once the watch is back, and erasures after it are told. A keyring whose
// watch had ended kept opening, and sealing new data with, keys erased
// after it, until its process restarted.
func TestLostWatchIsMadeAgain(t *testing.T) {
	ctx := t.Context()
	srv, js, store := openStore(t)
	erased := make(chan string, 16)
	lost := make(chan error, 16)
	wctx, stop := context.WithCancel(ctx)
	watching, err := store.WatchErased(wctx, func(id string) { erased <- id }, func(err error) {
		select {
		case lost <- err:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(); <-watching })
	st, err := js.Stream(ctx, "KV_"+keys.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	var watch string
	for name := range st.ConsumerNames(ctx).Name() {
		watch = name
	}
	if watch == "" {
		t.Fatal("the watch has no consumer")
	}
	// Another consumer takes the account's only one.
	if _, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "other"}); err != nil {
		t.Fatal(err)
	}
	acc := srv.GlobalAccount()
	if err := acc.UpdateJetStreamLimits(map[string]server.JetStreamAccountLimits{"": {MaxMemory: -1, MaxStore: -1, MaxStreams: -1, MaxConsumers: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteConsumer(ctx, watch); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-lost:
		if !errors.Is(err, keys.ErrWatchLost) {
			t.Fatalf("the first loss told: %v, want ErrWatchLost", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the watch was not lost")
	}
	told(t, erased, keys.AllCustomers, "the loss")
	if err := acc.UpdateJetStreamLimits(nil); err != nil {
		t.Fatal(err)
	}
	told(t, erased, keys.AllCustomers, "the watch made again")
	if _, err := store.Create(ctx, "customer/9", []byte("wrapped-key-stand-in")); err != nil {
		t.Fatal(err)
	}
	told(t, erased, "customer/9", "a key made after the watch was back")
	if err := store.Erase(ctx, "customer/9"); err != nil {
		t.Fatal(err)
	}
	told(t, erased, "customer/9", "an erase after the watch was back")
}

// What a lost watch gives a keyring, AllCustomers, drops every key it
// holds: erased meanwhile, none opens afterwards.
func TestKeyringDropsEveryKeyForAllCustomers(t *testing.T) {
	ctx := t.Context()
	_, _, store := openStore(t)
	ring := pii.NewKeyring(store, masterOf(t, 1))
	held := map[string]pii.Key{}
	for _, id := range []string{"customer/1", "customer/2"} {
		k, err := ring.DataKey(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		held[id] = k
		// Erased behind the keyring's back, as another process does.
		if err := store.Erase(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, err := ring.Key(ctx, id, held[id].Version); err != nil {
			t.Fatalf("%s before the drop: %v, want its cached key", id, err)
		}
	}
	ring.Drop(keys.AllCustomers)
	for id, k := range held {
		if _, err := ring.Key(ctx, id, k.Version); !errors.Is(err, pii.ErrForgotten) {
			t.Errorf("%s after dropping every key: %v, want ErrForgotten", id, err)
		}
	}
}
