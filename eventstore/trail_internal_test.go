package eventstore

import (
	"slices"
	"strconv"
	"testing"
)

// A trail holds the positions of an order's first events and nothing
// else: it grows only by the version after its end, at a later position;
// an event it holds at another position replaces it from there on; an
// event without a version, or past maxTrail, ends what it takes in.
func TestTrailExtends(t *testing.T) {
	for _, c := range []struct {
		name  string
		trail []uint64
		add   [][2]uint64 // version, position
		want  []uint64
	}{
		{"from nothing", nil, [][2]uint64{{1, 5}, {2, 9}}, []uint64{5, 9}},
		{"a gap", nil, [][2]uint64{{2, 9}, {3, 12}}, nil},
		{"after a gap, nothing more", []uint64{5}, [][2]uint64{{3, 12}, {2, 9}}, []uint64{5}},
		{"known again", []uint64{5, 9}, [][2]uint64{{1, 5}, {2, 9}, {3, 12}}, []uint64{5, 9, 12}},
		{"known elsewhere", []uint64{5, 9, 12}, [][2]uint64{{2, 10}, {3, 14}}, []uint64{5, 10, 14}},
		{"not after the last", []uint64{5, 9}, [][2]uint64{{3, 9}}, []uint64{5, 9}},
		{"written before versions", []uint64{5}, [][2]uint64{{0, 9}, {2, 9}}, []uint64{5}},
	} {
		e := versionMark{trail: slices.Clone(c.trail)}
		for _, a := range c.add {
			if !e.extend(a[0], a[1]) {
				break
			}
		}
		if !slices.Equal(e.trail, c.want) {
			t.Errorf("%s: trail %v, want %v", c.name, e.trail, c.want)
		}
	}
	var e versionMark
	for v := uint64(1); v <= maxTrail+1; v++ {
		e.extend(v, 10*v)
	}
	if len(e.trail) != maxTrail {
		t.Errorf("a trail of %d events holds %d, want %d", maxTrail+1, len(e.trail), maxTrail)
	}
}

// An append extends the trail by its events side by side, the last at the
// append's position, where the trail reaches the append's revision.
func TestAppendedExtendsTrail(t *testing.T) {
	var c versionCache
	c.appended("o", 0, 1, 4, 0)
	c.appended("o", 1, 3, 20, 0)
	c.appended("o", 7, 1, 30, 0) // the trail does not reach revision 7
	if got, v, _ := c.trailAfter("o", 0); !slices.Equal(got, []uint64{4, 18, 19, 20}) || v != 1 {
		t.Errorf("trail %v from version %d, want [4 18 19 20] from 1", got, v)
	}
	if got, v, _ := c.trailAfter("o", 18); !slices.Equal(got, []uint64{19, 20}) || v != 3 {
		t.Errorf("trail after 18 %v from version %d, want [19 20] from 3", got, v)
	}
	if got, _, _ := c.trailAfter("o", 20); got != nil {
		t.Errorf("trail after its end %v, want none", got)
	}
}

// A load asks for at most maxTrailGets events by position; a failed one
// cuts the trail back to what it did not ask for.
func TestTrailAfterAndCut(t *testing.T) {
	var c versionCache
	c.appended("o", 0, maxTrailGets+5, 1000, 0)
	got, v, more := c.trailAfter("o", 0)
	if len(got) != maxTrailGets || v != 1 || got[0] != 1000-maxTrailGets-4 || !more {
		t.Errorf("trailAfter(0) = %d positions from %v at version %d, more %v; want %d from %d at 1, more", len(got), got, v, more, maxTrailGets, 1000-maxTrailGets-4)
	}
	c.cutTrail("o", 1000-maxTrailGets-2)
	if e, _ := c.get("o"); len(e.trail) != 3 {
		t.Errorf("cut after the third event: trail %v, want its first 3", e.trail)
	}
}

// The cache holds at most maxVersionsKept orders, and always the last
// maxVersionsKept/2 it was told of.
func TestVersionCacheBounds(t *testing.T) {
	var c versionCache
	const n = 3*maxVersionsKept + 7
	for i := range n {
		c.appended(strconv.Itoa(i), 0, 1, uint64(i+1), 0)
		if held := len(c.cur) + len(c.prev); held > maxVersionsKept {
			t.Fatalf("after %d orders the cache holds %d, over %d", i+1, held, maxVersionsKept)
		}
	}
	for i := n - maxVersionsKept/2; i < n; i++ {
		if p, ok := c.lookup(strconv.Itoa(i), 1, 0); !ok || p != uint64(i+1) {
			t.Fatalf("order %d of the last %d: lookup = %d, %v; want %d", i, maxVersionsKept/2, p, ok, i+1)
		}
	}
	// Written again, an order of the previous generation moves to the
	// current one, and is not held twice.
	old := strconv.Itoa(n - maxVersionsKept/2 - 1)
	if _, ok := c.prev[old]; !ok {
		t.Fatalf("order %s is not in the previous generation", old)
	}
	c.remember(old, 2, uint64(n+1), 0)
	if _, twice := c.prev[old]; twice {
		t.Errorf("order %s written again is still in the previous generation", old)
	}
	if p, ok := c.lookup(old, 2, 0); !ok || p != uint64(n+1) {
		t.Errorf("order %s written again: lookup = %d, %v; want %d", old, p, ok, n+1)
	}
}
