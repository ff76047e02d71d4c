package payments_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/orderstream/orderstream/services/payments"
)

// TestSimulatorForgetsKeysAfterTheirTTL checks KeyTTL: a key used again
// within it gets its first outcome and moves nothing, however long it has
// been in use (a job retrying through a long outage); one unused for
// longer is new again, as with a provider whose keys expire, and a void of
// a charge whose key was forgotten releases nothing. What the simulator
// remembers stays bounded by what the last KeyTTL used.
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
	old, oldRefund, voided, retried, retriedRefund := charge("old"), refund("old"), charge("voided"), charge("retried"), refund("retried")
	// A job retries one key every five minutes for two hours.
	for range 24 {
		now = now.Add(5 * time.Minute)
		if ref := charge("retried"); ref != retried {
			t.Fatalf("retry at %v: ref %q, want the first one %q", now, ref, retried)
		}
		if ref := refund("retried"); ref != retriedRefund {
			t.Fatalf("refund retry at %v: ref %q, want %q", now, ref, retriedRefund)
		}
	}
	// Two hours on, "old" and "voided" have been unused for longer than
	// the TTL.
	if res, err := sim.Void(ctx, payments.VoidRequest{IdempotencyKey: "void", ChargeKey: "voided", OrderID: "o-voided"}); err != nil || res.Released {
		t.Fatalf("void of a forgotten charge: %+v, %v; want nothing released", res, err)
	}
	if ref := charge("old"); ref == old || ref == voided || ref == retried {
		t.Fatalf("forgotten key charged again with ref %q, want a new one (earlier %q, %q, %q)", ref, old, voided, retried)
	}
	if ref := refund("old"); ref == oldRefund || ref == retriedRefund {
		t.Fatalf("forgotten refund key made ref %q, want a new one", ref)
	}
	// A steady stream of new keys: the simulator remembers the last hour's.
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
