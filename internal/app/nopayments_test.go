package app_test

import (
	"net/http"
	"testing"
)

// Without the payments role in this process (and PAYMENTS_ADDR empty), the
// deadline routes answer 501, as the README says: the front end's calls to
// its own listener are not health-checked, since a service this process
// does not run has no health status and every call would fail as
// UNAVAILABLE (503, "retry later").
func TestDeadlineRoutesWithoutPaymentsAnswer501(t *testing.T) {
	addrs, _ := run(t, t.TempDir(), "ROLES", "command,query,audit,gateway")
	base := "http://" + addrs.HTTP
	waitStatus(t, base+"/readyz", http.StatusOK)
	code, body := getJSON(t, base+"/v1/admin/deadlines")
	if code != http.StatusNotImplemented {
		t.Fatalf("GET /v1/admin/deadlines on a node without payments: %d %v, want 501", code, body)
	}
}
