package projections

import "time"

// SetBulkBackoff sets the bulk catch-up's wait between tries for a test,
// and returns what restores it.
func SetBulkBackoff(d time.Duration) (restore func()) {
	old := bulkBackoff
	bulkBackoff = d
	return func() { bulkBackoff = old }
}
