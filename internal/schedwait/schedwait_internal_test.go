package schedwait

import (
	"slices"
	"testing"
	"time"
)

// A quantile is a value of the sample: the smallest with no more than
// 1-q of the sample above it.
func TestQuantileIsTheRankAtOrBelow(t *testing.T) {
	two := []time.Duration{1, 2}
	if quantile(two, 0.5) != 1 || quantile(two, 0.99) != 2 {
		t.Fatalf("of %v: p50 %v, p99 %v", two, quantile(two, 0.5), quantile(two, 0.99))
	}
	var hundred []time.Duration
	for i := range 100 {
		hundred = append(hundred, time.Duration(i+1))
	}
	if quantile(hundred, 0.5) != 50 || quantile(hundred, 0.99) != 99 || quantile(hundred, 0.999) != 100 {
		t.Fatalf("of 1..100: p50 %v, p99 %v, p99.9 %v", quantile(hundred, 0.5), quantile(hundred, 0.99), quantile(hundred, 0.999))
	}
	if one := []time.Duration{7}; quantile(one, 0.5) != 7 || quantile(one, 0.999) != 7 {
		t.Fatal("a single wait is every quantile")
	}
}

// Overlapping waits count once; waits that only touch merge too.
func TestUnionMergesOverlaps(t *testing.T) {
	got := union([]span{{10, 20}, {0, 5}, {15, 30}, {30, 31}, {40, 41}, {12, 14}})
	want := []span{{0, 5}, {10, 31}, {40, 41}}
	if !slices.Equal(got, want) {
		t.Fatalf("union %v, want %v", got, want)
	}
	if len(union(nil)) != 0 {
		t.Fatal("union of nothing")
	}
}
