package bounded_test

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/orderstream/orderstream/internal/bounded"
)

func TestTrim(t *testing.T) {
	for _, c := range []struct{ size, limit, want int }{
		{size: 10, limit: 10, want: 10}, // at the bound: untouched
		{size: 11, limit: 10, want: 8},  // over it: down to 7/8 (rounded down)
		{size: 100, limit: 16, want: 14},
		{size: 3, limit: 1, want: 0},
		{size: 5, limit: 0, want: 0},
		{size: 5, limit: -1, want: 0},
	} {
		m := map[int]bool{}
		for i := range c.size {
			m[i] = true
		}
		bounded.Trim(m, c.limit)
		if len(m) != c.want {
			t.Errorf("Trim(%d entries, %d) left %d, want %d", c.size, c.limit, len(m), c.want)
		}
	}
}

// A cache trimmed after each insert never holds more than its limit.
func ExampleTrim() {
	recent := map[string]int{}
	most := 0
	for i := range 1000 {
		recent["order-"+strconv.Itoa(i)] = i
		bounded.Trim(recent, 64)
		most = max(most, len(recent))
	}
	fmt.Println(most)
	// Output: 64
}

// Put keeps m within its limit, never drops the entry it puts, and
// replacing an entry drops nothing.
func TestPut(t *testing.T) {
	const limit = 16
	m := map[int]int{}
	for i := range 10 * limit {
		bounded.Put(m, i, i, limit)
		if len(m) > limit {
			t.Fatalf("after putting %d: %d entries, limit %d", i, len(m), limit)
		}
		if v, ok := m[i]; !ok || v != i {
			t.Fatalf("the entry just put, %d, is gone", i)
		}
	}
	n := len(m)
	for k := range m {
		bounded.Put(m, k, -1, limit)
	}
	if len(m) != n {
		t.Fatalf("replacing entries left %d of %d", len(m), n)
	}
}
