package money

import (
	"math"
	"testing"
)

func TestAddSaturating(t *testing.T) {
	for _, c := range []struct{ a, b, want int64 }{
		{1, 2, 3},
		{math.MaxInt64, 1, math.MaxInt64},
		{math.MaxInt64 - 1, 1, math.MaxInt64},
		{math.MinInt64, -1, math.MinInt64},
		{math.MaxInt64, -1, math.MaxInt64 - 1},
		{math.MinInt64, math.MaxInt64, -1},
		{1 << 62, 1 << 62, math.MaxInt64},
	} {
		if got := AddSaturating(c.a, c.b); got != c.want {
			t.Errorf("AddSaturating(%d, %d) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}
