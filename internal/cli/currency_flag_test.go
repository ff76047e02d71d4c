package cli_test

import (
	"strings"
	"testing"
	"time"
)

// A --currency other than the order's is refused (exit 1) before the
// command is sent: its amount would be read in the other currency's
// decimals (1200 JPY on an EUR order recorded as 12.00 EUR). The order's
// own currency, in any case, is taken. Before, add-item and place --tax
// took any --currency without a check.
func TestCurrencyFlagMustBeTheOrders(t *testing.T) {
	g := server(t).GRPC
	ok(t, run(t, g, "orders", "create", "--order-id", "cur-1", "--request-id", "cur-1", "--customer", "c", "--currency", "EUR",
		"--line1", "1 Way", "--city", "Oslo", "--country", "NO"))
	// The check reads the read model once: it must hold the order.
	for deadline := time.Now().Add(30 * time.Second); run(t, g, "orders", "get", "cur-1").code != 0; {
		if time.Now().After(deadline) {
			t.Fatal("the read model never held the order")
		}
		time.Sleep(20 * time.Millisecond) // polling the read model
	}
	for _, args := range [][]string{
		{"orders", "add-item", "cur-1", "TEA", "1", "1200", "--currency", "JPY", "--request-id", "cur-2"},
		{"orders", "place", "cur-1", "--tax", "5", "--currency", "JPY", "--request-id", "cur-3"},
	} {
		if r := run(t, g, args...); r.code != 1 {
			t.Fatalf("%v on an EUR order: exit %d, want 1: %s%s", args, r.code, r.stdout, r.stderr)
		}
	}
	added := jsonOf(t, ok(t, run(t, g, "-o", "json", "orders", "add-item", "cur-1", "TEA", "1", "12.00", "--currency", "eur", "--request-id", "cur-4")).stdout)
	// Read at the add-item's position: the read model may not have it yet.
	r := ok(t, run(t, g, "-o", "json", "orders", "get", "cur-1", "--min-position", str(t, added, "position")))
	if n := strings.Count(r.stdout, `"TEA"`); n != 1 || !strings.Contains(r.stdout, `"minor":1200`) {
		t.Fatalf("the order after the refusals and one add-item of 12.00 EUR: %s; want that line alone", r.stdout)
	}
}
