package payments_test

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/orderstream/orderstream/services/payments"
)

// TestSimulatorForgetsTheOldestKeys checks MaxKeys: the simulator keeps
// the outcomes of its last MaxKeys charge keys and refund keys, and its
// last movements, so a repeated recent key moves no money again while a
// forgotten one is new, as with a provider whose keys expire.
func TestSimulatorForgetsTheOldestKeys(t *testing.T) {
	const keep = 3
	sim := payments.NewSimulator(payments.SimulatorConfig{MaxKeys: keep})
	ctx := t.Context()
	charge := func(i int) string {
		t.Helper()
		res, err := sim.Charge(ctx, payments.ChargeRequest{IdempotencyKey: fmt.Sprint("ch-", i), OrderID: fmt.Sprint("o-", i), CustomerID: "c", Amount: 100, Currency: "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		return res.PaymentRef
	}
	var refs []string
	for i := range 5 {
		refs = append(refs, charge(i))
	}
	if got, want := slices.Sorted(maps.Keys(sim.Charged())), []string{"ch-2", "ch-3", "ch-4"}; !slices.Equal(got, want) {
		t.Fatalf("charge keys kept %v, want %v", got, want)
	}
	if got := sim.ChargeKeys(); len(got) != keep || got["o-0"] != nil || got["o-4"] == nil {
		t.Fatalf("charge keys per order %v, want those of o-2..o-4", got)
	}
	// A key still remembered answers its first outcome and moves nothing.
	if ref := charge(4); ref != refs[4] || sim.Charged()["ch-4"] != 1 {
		t.Fatalf("repeated recent key: ref %q (first %q), charged %d times", ref, refs[4], sim.Charged()["ch-4"])
	}
	// A forgotten key is a new charge, with a reference of its own.
	if ref := charge(0); slices.Contains(refs, ref) || sim.Charged()["ch-0"] != 1 {
		t.Fatalf("forgotten key: ref %q among %v, charged %d times", ref, refs, sim.Charged()["ch-0"])
	}
	for i := range 5 {
		if _, err := sim.Refund(ctx, payments.RefundRequest{IdempotencyKey: fmt.Sprint("rf-", i), OrderID: fmt.Sprint("o-", i), PaymentRef: refs[i], Amount: 100, Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := slices.Sorted(maps.Keys(sim.Refunded())), []string{"rf-2", "rf-3", "rf-4"}; !slices.Equal(got, want) {
		t.Fatalf("refund keys kept %v, want %v", got, want)
	}
	// 6 charges and 5 refunds moved money; at most 2×MaxKeys are kept,
	// the last ones.
	mv := sim.Movements()
	if len(mv) < keep || len(mv) >= 2*keep || mv[len(mv)-1].Key != "rf-4" {
		t.Fatalf("movements %v: want the last %d to %d, ending with rf-4", mv, keep, 2*keep-1)
	}
}

// TestSimulatorRemembersEverythingByDefault: without MaxKeys every key and
// movement stays, which the tests that audit each movement rely on.
func TestSimulatorRemembersEverythingByDefault(t *testing.T) {
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	for i := range 100 {
		if _, err := sim.Charge(t.Context(), payments.ChargeRequest{IdempotencyKey: fmt.Sprint("ch-", i), OrderID: fmt.Sprint("o-", i), Amount: 1, Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
	}
	if n, m := len(sim.Charged()), len(sim.Movements()); n != 100 || m != 100 {
		t.Fatalf("%d keys and %d movements kept, want 100 each", n, m)
	}
}
