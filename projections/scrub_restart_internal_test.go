package projections

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
)

// copyFile copies from to to, if from exists.
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if os.IsNotExist(err) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
}

// An erasure whose WAL scrub was left due (a reader held an older
// snapshot), and a process that died before the scrub's retry: the read
// model opened again on its files (copied as the dead process left them)
// holds the forgotten customer's address in none of them. Nothing shrank
// the WAL after a restart, and the address stayed readable in it.
func TestErasureScrubLeftDueIsDoneOnTheNextOpen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "rm.db")
	m := openModel(t, path)
	m.scrubPause = time.Hour // the process dies before its retry
	const secret = "1 Analytical Way, flat Lovelace"
	withAddress := created("o-1", "c", 1)
	ev := withAddress.Event.(order.OrderCreated)
	ev.Shipping = &order.Address{Name: "Ada", Line1: secret, City: "London", Country: "GB"}
	withAddress.Event = ev
	if _, _, err := m.Apply(ctx, []Item{withAddress}); err != nil {
		t.Fatal(err)
	}
	release := holdSnapshot(t, path)
	forget := Item{Rec: eventstore.Recorded{OrderID: order.CustomersSubjectID, Position: 2, Version: 1, Type: "CustomerForgotten", Time: time.Now()},
		Event: order.CustomerForgotten{CustomerID: "c"}}
	if _, _, err := m.Apply(ctx, []Item{forget}); err != nil {
		t.Fatal(err)
	}
	if m.scrubDue.Load() == 0 {
		t.Fatal("the erasure's scrub got through with a reader holding an older snapshot: nothing to show")
	}
	crashed := filepath.Join(t.TempDir(), "rm.db")
	for _, s := range []string{"", "-wal", "-shm"} {
		copyFile(t, path+s, crashed+s)
	}
	release()
	m2 := openModel(t, crashed)
	o, _, err := m2.GetOrder(ctx, "o-1")
	if err != nil || o.State.Shipping == nil || !o.State.Shipping.Erased {
		t.Fatalf("o-1 after the restart: %+v, %v; want its address erased", o.State.Shipping, err)
	}
	for _, s := range []string{"", "-wal"} {
		b, err := os.ReadFile(crashed + s)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if i := bytes.Index(b, []byte(secret)); i >= 0 {
			t.Errorf("the forgotten customer's address is readable in %s at offset %d after the restart", filepath.Base(crashed+s), i)
		}
	}
}
