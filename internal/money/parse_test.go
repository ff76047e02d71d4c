package money_test

import (
	"errors"
	"math"
	"testing"

	"github.com/orderstream/orderstream/internal/money"
)

// An amount past what an int64 of minor units holds says it is too large
// and what the most is, rather than that it is not a number. Before, one
// cent past the limit read as malformed.
func TestParseSaysTooLarge(t *testing.T) {
	if _, err := money.Parse("92233720368547758.08", "EUR"); !errors.Is(err, money.ErrTooLarge) {
		t.Fatalf("Parse one cent past the limit: %v; want ErrTooLarge", err)
	}
	if n, err := money.Parse("92233720368547758.07", "EUR"); err != nil || n != math.MaxInt64 {
		t.Fatalf("Parse of the most: %d, %v", n, err)
	}
	for _, malformed := range []string{"12.x", "99999999999999999999abc", "123456789012345678901,00"} {
		if _, err := money.Parse(malformed, "EUR"); err == nil || errors.Is(err, money.ErrTooLarge) {
			t.Fatalf("Parse(%q): %v; want it refused as malformed", malformed, err)
		}
	}
}
