package eventstore

import (
	"strconv"
	"testing"
)

// BenchmarkVersionCacheNewOrders is what the version cache costs an append
// that creates an order, once it holds as many orders as it may: every
// CreateOrder's case on a running command node.
func BenchmarkVersionCacheNewOrders(b *testing.B) {
	var c versionCache
	ids := make([]string, 1<<20)
	for i := range ids {
		ids[i] = "order-" + strconv.Itoa(i) + "-abcdefghijklmnopqrstuvwxyz0123"
	}
	for i := range 2 * maxVersionsKept {
		c.appended(ids[i%len(ids)], 0, 1, uint64(i+1), 0)
	}
	b.ResetTimer()
	i := 2 * maxVersionsKept
	for b.Loop() {
		c.appended(ids[i%len(ids)], 0, 1, uint64(i+1), 0)
		i++
	}
}
