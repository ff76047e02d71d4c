package console_test

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/app/apptest"
)

// An operator settles a parked job from the Operations page: the job is
// listed with a Settle form, which removes it only when the operator
// confirms that its money was settled with the provider, and the page then
// lists it no more.
func TestSettleAParkedJobFromTheOperationsPage(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte(adminToken+" alice admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Every charge fails and one attempt parks the job.
	addrs, _ := apptest.Start(t, map[string]string{"AUTH_TOKENS_FILE": tokens, "PAYMENT_SIM_FAILURE_RATE": "1", "PAYMENT_MAX_ATTEMPTS": "1",
		"PAYMENT_BACKOFF_BASE": "1ms", "PAYMENT_BACKOFF_MAX": "1ms"})
	c := &console{base: "http://" + addrs.HTTP}
	cl := newClient(t, c.base)
	cl.signIn(adminToken, "")
	id, _ := c.createOrder(t, "cust-settle")
	c.api(t, "POST", "/v1/orders/"+id+":place", map[string]any{})

	var page string
	for deadline := time.Now().Add(stepTimeout); !strings.Contains(page, `name="order_id" value="`+id+`"`); {
		if time.Now().After(deadline) {
			t.Fatalf("the order's job is not listed as parked:\n%s", page)
		}
		var res response
		if res, page = cl.do("GET", "/console/operations", nil, nil); res.StatusCode != http.StatusOK {
			t.Fatalf("operations page: %s", res.Status)
		}
		time.Sleep(20 * time.Millisecond) // between polls of the payments node's state
	}
	m := csrfMeta.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token on the page")
	}
	form := url.Values{"csrf": {m[1]}, "order_id": {id}, "kind": {"PAYMENT_JOB_KIND_CHARGE"}}
	if res, _ := cl.do("POST", "/console/operations/parked/settle", form, nil); res.StatusCode != http.StatusBadRequest {
		t.Fatalf("a settle without the confirmation: %s, want 400", res.Status)
	}
	form.Set("confirm", "on")
	if res, _ := cl.do("POST", "/console/operations/parked/settle", url.Values{"csrf": {m[1]}, "order_id": {id}, "kind": {"PAYMENT_JOB_KIND_REFUND"}, "confirm": {"on"}}, nil); res.StatusCode != http.StatusNotFound {
		t.Fatalf("a settle of a refund job the order does not have: %s, want 404", res.Status)
	}
	res, _ := cl.do("POST", "/console/operations/parked/settle", form, nil)
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("settle: %s, want 303", res.Status)
	}
	_, page = cl.do("GET", res.Header.Get("Location"), nil, nil)
	if strings.Contains(page, `name="order_id" value="`+id+`"`) || !strings.Contains(page, "removed as settled") {
		t.Fatalf("after the settle the page still lists the job, or says nothing of it:\n%s", page)
	}
	if parked := c.api(t, "GET", "/v1/admin/parked-payments", nil); len(parked["parked"].([]any)) != 0 {
		t.Fatalf("parked jobs after the settle: %v", parked)
	}
}
