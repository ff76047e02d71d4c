package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/orderstream/orderstream/api/openapi"
	"github.com/orderstream/orderstream/internal/tlsconfig"
	"github.com/orderstream/orderstream/internal/tlsconfig/tlstest"
)

// doWithHeaders sends one REST request and returns the status and body.
func doWithHeaders(t *testing.T, method, url, body string, headers ...string) (int, string) {
	t.Helper()
	code, _, b := doFull(t, method, url, body, headers...)
	return code, b
}

// doFull is doWithHeaders that also returns the answer's headers.
func doFull(t *testing.T, method, url, body string, headers ...string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b)
}

// documentedStatuses lists the statuses openapi.json documents for an
// operation.
func documentedStatuses(t *testing.T, path, method string) map[string]bool {
	t.Helper()
	var doc struct {
		Paths map[string]map[string]struct {
			Responses map[string]json.RawMessage `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openapi.Spec, &doc); err != nil {
		t.Fatal(err)
	}
	op, ok := doc.Paths[path][method]
	if !ok {
		t.Fatalf("no %s %s in openapi.json", method, path)
	}
	out := map[string]bool{}
	for k := range op.Responses {
		out[k] = true
	}
	return out
}

// A REST request with a large header (here a 100 KiB Cookie, which
// grpc-gateway forwards as grpcgateway-cookie metadata) is refused as the
// client's (431). The HTTP server took up to 1 MiB of headers, and the
// gateway's own gRPC client then refused the call against the server's
// 64 KiB metadata limit: a 500 "internal error".
func TestHugeHeaderOnRESTIsAClientError(t *testing.T) {
	addrs, _ := run(t, t.TempDir(), "ROLES", "command,query,audit,gateway")
	code, body := doWithHeaders(t, "POST", "http://"+addrs.HTTP+"/v1/orders",
		`{"orderId":"big-header-1","customerId":"c1","currency":"EUR"}`,
		"Idempotency-Key", "big-header-1", "Cookie", "session="+strings.Repeat("a", 100<<10))
	if code != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a request with a 100 KiB header: %d %s; want 431 Request Header Fields Too Large", code, body)
	}
}

// Headers under 32 KiB are served, over HTTP/1.1 and, with TLS_CERT, over
// HTTP/2, whose limit net/http counts otherwise (a limit lowered to make
// HTTP/1.1's exact refused 30 KiB over HTTP/2).
func TestHeadersUnder32KiBAreServed(t *testing.T) {
	addrs, _ := run(t, t.TempDir(), "ROLES", "command,query,audit,gateway")
	pad := strings.Repeat("a", 30<<10)
	if code, body := doWithHeaders(t, "GET", "http://"+addrs.HTTP+"/v1/orders/headers-32k", "", "X-Pad", pad); code != http.StatusNotFound {
		t.Errorf("30 KiB of headers over HTTP/1.1: %d %.200s; want them served (404, no such order)", code, body)
	}
	ca, cert, key, _, _ := tlstest.Generate(t, t.TempDir())
	addrs, _ = run(t, t.TempDir(), "TLS_CERT", cert, "TLS_KEY", key, "ROLES", "command,query,audit,gateway")
	cfg, err := tlsconfig.Client(ca, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	req, err := http.NewRequestWithContext(t.Context(), "GET", "https://"+addrs.HTTP+"/v1/orders/headers-32k", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Pad", pad)
	res, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("30 KiB of headers over HTTP/2: %v", err)
	}
	_ = res.Body.Close()
	if res.ProtoMajor != 2 || res.StatusCode != http.StatusNotFound {
		t.Fatalf("30 KiB of headers: %s over %s; want them served (404, no such order) over HTTP/2", res.Status, res.Proto)
	}
}

// Another method on /metrics is 405 naming GET and HEAD, as on every other
// route of the listener: it was the gateway's 404 "no such route".
func TestWrongMethodOnMetricsIs405(t *testing.T) {
	addrs, _ := run(t, t.TempDir(), "ROLES", "command,query,audit,gateway")
	code, hdr, body := doFull(t, "POST", "http://"+addrs.HTTP+"/metrics", "")
	if code != http.StatusMethodNotAllowed || hdr.Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST /metrics: %d, Allow %q: %.200s; want 405 naming GET, HEAD", code, hdr.Get("Allow"), body)
	}
}

// Every REST stream tells nginx not to buffer it, as the README says of
// them: a followed export (newline-delimited JSON) did not, and behind
// nginx's default buffering it was held back.
func TestFollowedExportTellsNginxNotToBuffer(t *testing.T) {
	addrs, _ := run(t, t.TempDir(), "ROLES", "command,query,audit,gateway")
	req, err := http.NewRequestWithContext(t.Context(), "GET", "http://"+addrs.HTTP+"/v1/events?follow=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req) // returns once the headers came
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("X-Accel-Buffering") != "no" {
		t.Fatalf("GET /v1/events?follow=true: %d, X-Accel-Buffering %q; want 200 and \"no\"", res.StatusCode, res.Header.Get("X-Accel-Buffering"))
	}
}

// ForgetCustomer takes Idempotency-Key (its request has a request_id, which
// the gateway fills from the header) and answers 422 REQUEST_ID_REUSED for
// a key reused on another customer, as openapi.json now documents; it
// documented neither the header nor 422 (nor 409) for the operation.
func TestForgetCustomerStatusesAreDocumented(t *testing.T) {
	addrs, _ := run(t, t.TempDir(), "ROLES", "command,query,audit,gateway")
	base := "http://" + addrs.HTTP
	for _, c := range []string{"forget-a", "forget-b"} {
		code, body := doWithHeaders(t, "POST", base+"/v1/orders",
			`{"orderId":"o-`+c+`","customerId":"`+c+`","currency":"EUR","shippingAddress":{"line1":"1 Way","city":"London","country":"GB"}}`,
			"Idempotency-Key", "create-"+c)
		if code != 200 {
			t.Fatalf("create: %d %s", code, body)
		}
	}
	code, body := doWithHeaders(t, "POST", base+"/v1/admin/customers/forget-a:forget", `{}`, "Idempotency-Key", "forget-key-1")
	if code != 200 {
		t.Fatalf("forget a: %d %s", code, body)
	}
	code, body = doWithHeaders(t, "POST", base+"/v1/admin/customers/forget-b:forget", `{}`, "Idempotency-Key", "forget-key-1")
	documented := documentedStatuses(t, "/v1/admin/customers/{customerId}:forget", "post")
	if code != http.StatusUnprocessableEntity || !documented[strconv.Itoa(code)] {
		t.Fatalf("forget b with the key of forget a: %d %s; want 422 REQUEST_ID_REUSED, documented (openapi.json documents %v)", code, body, documented)
	}
}
