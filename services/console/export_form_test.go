package console_test

import (
	"net/http"
	"strings"
	"testing"
)

// An export whose range holds nothing by construction (its first position
// after its last, or its start time after its end time) is a mistake in
// the form: it must be refused (400) on the audit page, saying why and with
// what was typed, as the console's own refusals of the export form are
// (parseExport). It was accepted: 200 and an empty download, which reads
// as "no events in that range".
func TestExportRefusesAnInvertedRange(t *testing.T) {
	c, cl, _ := startWithAdmin(t)
	if res := cl.signIn(adminToken, ""); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %s", res.Status)
	}
	for _, cust := range []string{"inv-1", "inv-2", "inv-3"} {
		c.createOrder(t, cust)
	}
	for _, q := range []string{
		"from_position=3&to_position=2",
		"from_time=2030-01-01T00:00&to_time=2020-01-01T00:00",
	} {
		res, body := cl.do("GET", "/console/audit/export?"+q, nil, nil)
		if res.StatusCode != http.StatusBadRequest || !strings.Contains(res.Header.Get("Content-Type"), "text/html") || flashOf(body) == "" {
			t.Errorf("export ?%s: %s %s, flash %q, %d bytes; want 400 on the audit page saying the range is empty",
				q, res.Status, res.Header.Get("Content-Type"), flashOf(body), len(body))
		}
	}
}

// An export the audit service refuses (a first position past the log's
// head, an order id it does not accept) is the user's mistake in the form,
// like those the console refuses itself: the audit page again with the
// service's reason and the form as it was typed. It was a bare error page,
// with the form and everything typed into it gone.
func TestExportRefusedByTheServiceKeepsTheForm(t *testing.T) {
	_, cl, _ := startWithAdmin(t)
	if res := cl.signIn(adminToken, ""); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %s", res.Status)
	}
	long := strings.Repeat("x", 70) // over the 64 bytes of an id
	for _, q := range []string{
		"from_position=999999&orders=keep-me-typed",
		"orders=keep-me-typed+" + long,
	} {
		res, body := cl.do("GET", "/console/audit/export?"+q, nil, nil)
		if res.StatusCode != http.StatusBadRequest {
			t.Fatalf("export ?%s: %s, want 400", q, res.Status)
		}
		if !strings.Contains(body, `action="/console/audit/export"`) || !strings.Contains(body, `value="keep-me-typed`) {
			t.Errorf("export ?%s refused (flash %q) without the export form or what was typed into it", q, flashOf(body))
		}
	}
}
