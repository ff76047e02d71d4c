package app_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// doETag is doFull with the answer's ETag alone of its headers.
func doETag(t *testing.T, method, url, body string, headers ...string) (int, string, string) {
	t.Helper()
	code, h, b := doFull(t, method, url, body, headers...)
	return code, h.Get("ETag"), b
}

// An erasure changes what a GET of an order answers (its address erased)
// but not the order's revision, which the ETag carried alone: a client
// revalidating the copy it cached before the erasure (If-None-Match) was
// told 304 and kept showing the address. The ETag now says the erasure
// ("<revision>-erased"), and If-Match takes it.
func TestErasureChangesTheOrdersETag(t *testing.T) {
	addrs, _ := run(t, t.TempDir(), "ROLES", "command,query,audit,gateway")
	base := "http://" + addrs.HTTP
	code, before, body := doETag(t, "POST", base+"/v1/orders",
		`{"orderId":"etag-1","customerId":"etag-c","currency":"EUR","lines":[{"sku":"A","quantity":"1","unitPrice":"100"}],"shippingAddress":{"line1":"1 Way","city":"London","country":"GB"}}`,
		"Idempotency-Key", "etag-create")
	if code != 200 || before != `"1"` {
		t.Fatalf("create: %d ETag %s %s", code, before, body)
	}
	code, _, body = doETag(t, "POST", base+"/v1/admin/customers/etag-c:forget", `{}`, "Idempotency-Key", "etag-forget")
	if code != 200 {
		t.Fatalf("forget: %d %s", code, body)
	}
	var forgot struct{ Position string }
	if err := json.Unmarshal([]byte(body), &forgot); err != nil || forgot.Position == "" {
		t.Fatalf("forget answer %s: %v", body, err)
	}
	code, after, body := doETag(t, "GET", base+"/v1/orders/etag-1", "", "If-None-Match", before, "X-Min-Position", forgot.Position)
	if code != 200 || after != `"1-erased"` || !strings.Contains(body, `"erased":true`) || strings.Contains(body, "1 Way") {
		t.Fatalf("GET after the erasure with If-None-Match %s: %d ETag %s %s; want 200, the erased order and a new ETag", before, code, after, body)
	}
	if code, _, _ := doETag(t, "GET", base+"/v1/orders/etag-1", "", "If-None-Match", after); code != http.StatusNotModified {
		t.Errorf("GET with If-None-Match %s: %d, want 304", after, code)
	}
	if code, tag, body := doETag(t, "POST", base+"/v1/orders/etag-1:place", `{}`, "Idempotency-Key", "etag-place", "If-Match", after); code != 200 || tag != `"2-erased"` {
		t.Errorf("place with If-Match %s: %d ETag %s %s; want 200 and \"2-erased\"", after, code, tag, body)
	}
}
