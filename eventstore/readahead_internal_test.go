package eventstore

import "testing"

// A read asks for two batches ahead, but never more than maxReadAhead
// messages: live reads (batches of 500) ask for 1,000, a rebuild's batches
// of 5,000 for 2,000.
func TestReadAhead(t *testing.T) {
	for _, c := range []struct{ batch, want int }{{1, 2}, {DefaultBatchSize, 1000}, {1000, 2000}, {5000, maxReadAhead}, {MaxBatchSize, maxReadAhead}} {
		if got := readAhead(c.batch); got != c.want {
			t.Errorf("readAhead(%d) = %d, want %d", c.batch, got, c.want)
		}
	}
}
