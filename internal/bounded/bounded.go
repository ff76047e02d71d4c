// Package bounded keeps the in-memory caches of ordersd's services (recent
// read-model rows, command-side histories, the payments manager's order
// states) within their bounds.
package bounded

// Trim drops entries of m when it holds more than limit: down to seven
// eighths of limit, so that a cache filling steadily trims seldom. The
// victims are whatever map iteration yields first, which is random: it
// costs no bookkeeping on reads, unlike an LRU order, and for caches of
// work in progress the entries that matter are recent and many, so random
// victims lose few of them. A limit of 0 or less empties m.
func Trim[K comparable, V any](m map[K]V, limit int) {
	if len(m) <= limit {
		return
	}
	drop := len(m) - max(limit, 0)*7/8
	for k := range m {
		if drop == 0 {
			return
		}
		delete(m, k)
		drop--
	}
}

// Put sets m[k] to v. When k is new, it first trims m to make room for it
// (Trim to limit-1), so that the entry just put is never the victim: the
// caller put it because it is about to be used. limit should be at least
// 1; with less, m holds only k afterwards.
func Put[K comparable, V any](m map[K]V, k K, v V, limit int) {
	if _, ok := m[k]; !ok {
		Trim(m, limit-1)
	}
	m[k] = v
}
