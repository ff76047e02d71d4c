package payments_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/orderstream/orderstream/services/payments"
)

// TestSimulatorForgetsKeysAfterTheirTTL checks KeyTTL: a key repeated
// within it gets its first outcome and moves nothing; one older than it is
// new again, as with a provider whose keys expire, and a void of a charge
// whose key was forgotten releases nothing. What the simulator remembers
// stays bounded by what the last KeyTTL saw.
func TestSimulatorForgetsKeysAfterTheirTTL(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sim := payments.NewSimulator(payments.SimulatorConfig{KeyTTL: time.Hour, Clock: func() time.Time { return now }})
	ctx := t.Context()
	charge := func(key string) string {
		t.Helper()
		res, err := sim.Charge(ctx, payments.ChargeRequest{IdempotencyKey: key, OrderID: "o-" + key, CustomerID: "c", Amount: 100, Currency: "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		return res.PaymentRef
	}
	refund := func(key string) string {
		t.Helper()
		res, err := sim.Refund(ctx, payments.RefundRequest{IdempotencyKey: key, OrderID: "o-" + key, PaymentRef: "p", Amount: 100, Currency: "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		return res.RefundRef
	}
	old, oldRefund, voided := charge("old"), refund("old"), charge("voided")
	now = now.Add(30 * time.Minute)
	recent, recentRefund := charge("recent"), refund("recent")
	if ref := charge("old"); ref != old {
		t.Fatalf("repeat within the TTL: ref %q, want the first one %q", ref, old)
	}
	if ref := refund("old"); ref != oldRefund {
		t.Fatalf("refund repeated within the TTL: ref %q, want %q", ref, oldRefund)
	}
	now = now.Add(31 * time.Minute) // "old" and "voided" are 61 minutes old, "recent" 31
	if res, err := sim.Void(ctx, payments.VoidRequest{IdempotencyKey: "void", ChargeKey: "voided", OrderID: "o-voided"}); err != nil || res.Released {
		t.Fatalf("void of a forgotten charge: %+v, %v; want nothing released", res, err)
	}
	if ref := charge("recent"); ref != recent {
		t.Fatalf("repeat within the TTL: ref %q, want %q", ref, recent)
	}
	if ref := refund("recent"); ref != recentRefund {
		t.Fatalf("refund repeated within the TTL: ref %q, want %q", ref, recentRefund)
	}
	if ref := charge("old"); ref == old || ref == recent || ref == voided {
		t.Fatalf("forgotten key charged again with ref %q, want a new one (earlier %q, %q, %q)", ref, old, recent, voided)
	}
	if ref := refund("old"); ref == oldRefund || ref == recentRefund {
		t.Fatalf("forgotten refund key made ref %q, want a new one", ref)
	}
	// A steady stream of keys: the simulator remembers the last hour's.
	for i := range 1000 {
		now = now.Add(10 * time.Second)
		charge(fmt.Sprint("k", i))
		refund(fmt.Sprint("k", i))
	}
	if c, r := sim.Remembered(); c != 360 || r != 360 {
		t.Fatalf("remembers %d charge and %d refund keys, want the last hour's 360 each", c, r)
	}
	if len(sim.Movements()) != 0 || len(sim.Charged()) != 0 || len(sim.ChargeKeys()) != 0 || len(sim.Refunded()) != 0 {
		t.Fatal("audit records kept with KeyTTL set")
	}
}

// TestSimulatorRemembersEverythingByDefault: without KeyTTL every key and
// movement stays, which the tests that audit each movement rely on.
func TestSimulatorRemembersEverythingByDefault(t *testing.T) {
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	for i := range 100 {
		if _, err := sim.Charge(t.Context(), payments.ChargeRequest{IdempotencyKey: fmt.Sprint("ch-", i), OrderID: fmt.Sprint("o-", i), Amount: 1, Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
	}
	if c, _ := sim.Remembered(); c != 100 || len(sim.Charged()) != 100 || len(sim.Movements()) != 100 || len(sim.ChargeKeys()) != 100 {
		t.Fatalf("%d keys, %d charged, %d movements, %d orders kept, want 100 each", c, len(sim.Charged()), len(sim.Movements()), len(sim.ChargeKeys()))
	}
}
