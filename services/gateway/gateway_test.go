package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/orderstream/orderstream/internal/app"
	"github.com/orderstream/orderstream/internal/config"
)

// start runs the whole of ordersd in-process on loopback ports and returns
// the base URL of its HTTP listener.
func start(t *testing.T) string {
	t.Helper()
	cfg, err := config.FromMap(map[string]string{"DATA_DIR": t.TempDir(), "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0", "NATS_LISTEN": "127.0.0.1:0",
		// Payments are recorded by hand here, so the payments role is off.
		"ROLES": "command,query,audit,gateway"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan app.Addrs, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), func(a app.Addrs) { ready <- a })
	}()
	var addrs app.Addrs
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatalf("ordersd: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return "http://" + addrs.HTTP
}

type reply struct {
	code   int
	header http.Header
	body   map[string]any
	raw    string
}

var keySeq atomic.Int64

func key() string { return fmt.Sprintf("idem-%d-%d", os.Getpid(), keySeq.Add(1)) }

func do(t *testing.T, method, url, body string, headers ...string) reply {
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
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	r := reply{code: res.StatusCode, header: res.Header, raw: string(b)}
	_ = json.Unmarshal(b, &r.body)
	return r
}

func (r reply) order() map[string]any { o, _ := r.body["order"].(map[string]any); return o }

func (r reply) str(path ...string) string {
	var v any = r.body
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	s, _ := v.(string)
	return s
}

func expect(t *testing.T, r reply, code int) reply {
	t.Helper()
	if r.code != code {
		t.Fatalf("HTTP %d, want %d: %s", r.code, code, r.raw)
	}
	return r
}

const newOrder = `{"customerId":"rest-1","currency":"EUR","lines":[{"sku":"BOOK-1","quantity":"2","unitPrice":"1250"}],
	"shippingAddress":{"name":"Ada","line1":"1 Analytical Way","city":"London","country":"GB"}}`

func TestLifecycleOverREST(t *testing.T) {
	base := start(t)
	c := expect(t, do(t, "POST", base+"/v1/orders", newOrder, "Idempotency-Key", key()), 200)
	id := c.str("order", "orderId")
	if id == "" || c.str("order", "status") != "ORDER_STATUS_DRAFT" || c.str("order", "total") != "2500" {
		t.Fatalf("created: %s", c.raw)
	}
	if c.header.Get("ETag") != `"`+c.str("order", "revision")+`"` {
		t.Fatalf("ETag %q for revision %s", c.header.Get("ETag"), c.str("order", "revision"))
	}
	o := base + "/v1/orders/" + id
	r := expect(t, do(t, "POST", o+"/items", `{"sku":"PEN-9","quantity":"3","unitPrice":"199"}`, "Idempotency-Key", key(), "If-Match", c.header.Get("ETag")), 200)
	if r.str("order", "total") != "3097" {
		t.Fatalf("after add: %s", r.raw)
	}
	r = expect(t, do(t, "PATCH", o+"/items/PEN-9", `{"quantity":"1"}`, "Idempotency-Key", key()), 200)
	if r.str("order", "total") != "2699" {
		t.Fatalf("after change: %s", r.raw)
	}
	r = expect(t, do(t, "DELETE", o+"/items/PEN-9", "", "Idempotency-Key", key()), 200)
	if r.str("order", "total") != "2500" {
		t.Fatalf("after remove: %s", r.raw)
	}
	expect(t, do(t, "PUT", o+"/shipping-address", `{"shippingAddress":{"line1":"2 Way","city":"Leeds","country":"GB"}}`, "Idempotency-Key", key()), 200)
	r = expect(t, do(t, "POST", o+":place", `{}`, "Idempotency-Key", key()), 200)
	if r.str("order", "status") != "ORDER_STATUS_PLACED" {
		t.Fatalf("place: %s", r.raw)
	}
	expect(t, do(t, "POST", o+"/payments", `{"outcome":"PAYMENT_OUTCOME_AUTHORIZED","paymentRef":"psp-1","amount":"2500"}`, "Idempotency-Key", key()), 200)
	expect(t, do(t, "POST", o+":ship", `{"carrier":"DHL","trackingNumber":"T1"}`, "Idempotency-Key", key()), 200)
	r = expect(t, do(t, "POST", o+":deliver", `{}`, "Idempotency-Key", key()), 200)
	if r.str("order", "status") != "ORDER_STATUS_DELIVERED" {
		t.Fatalf("deliver: %s", r.raw)
	}
	g := expect(t, do(t, "GET", o, "", "X-Min-Position", r.str("position")), 200)
	if g.str("order", "status") != "ORDER_STATUS_DELIVERED" || g.header.Get("ETag") != `"`+r.str("order", "revision")+`"` {
		t.Fatalf("GET after deliver: %s (ETag %s)", g.raw, g.header.Get("ETag"))
	}
}

func TestListPaging(t *testing.T) {
	base := start(t)
	var last string
	for i := range 5 {
		r := expect(t, do(t, "POST", base+"/v1/orders", fmt.Sprintf(`{"customerId":"pager","currency":"USD","lines":[{"sku":"A","quantity":"%d","unitPrice":"1"}]}`, i+1), "Idempotency-Key", key()), 200)
		last = r.str("position")
	}
	seen := map[string]bool{}
	url := base + "/v1/orders?customerId=pager&pageSize=2"
	for pages := 0; ; pages++ {
		h := []string{}
		if pages == 0 {
			h = append(h, "X-Min-Position", last)
		}
		r := expect(t, do(t, "GET", url, "", h...), 200)
		for _, o := range r.body["orders"].([]any) {
			seen[o.(map[string]any)["orderId"].(string)] = true
		}
		next := r.str("nextPageToken")
		if next == "" {
			break
		}
		url = base + "/v1/orders?customerId=pager&pageSize=2&pageToken=" + next
	}
	if len(seen) != 5 {
		t.Fatalf("paged through %d orders, want 5", len(seen))
	}
	s := expect(t, do(t, "GET", base+"/v1/customers/pager/summary", ""), 200)
	if !strings.Contains(s.raw, `"orderCount":"5"`) {
		t.Fatalf("summary: %s", s.raw)
	}
}

func TestErrorStatuses(t *testing.T) {
	base := start(t)
	c := expect(t, do(t, "POST", base+"/v1/orders", newOrder, "Idempotency-Key", key()), 200)
	id := c.str("order", "orderId")
	o := base + "/v1/orders/" + id
	placed := expect(t, do(t, "POST", base+"/v1/orders", newOrder, "Idempotency-Key", key()), 200).str("order", "orderId")
	expect(t, do(t, "POST", base+"/v1/orders/"+placed+":place", `{}`, "Idempotency-Key", key()), 200)

	cases := []struct {
		name     string
		method   string
		url      string
		body     string
		headers  []string
		want     int
		mentions string
	}{
		{"malformed JSON", "POST", base + "/v1/orders", `{"customerId":`, []string{"Idempotency-Key", key()}, 400, ""},
		{"unknown field", "POST", base + "/v1/orders", `{"requestId":"x1","customerId":"c","currency":"EUR","colour":"red"}`, nil, 400, "colour"},
		{"wrong type", "POST", base + "/v1/orders", `{"requestId":"x2","customerId":"c","currency":"EUR","lines":"many"}`, nil, 400, ""},
		{"oversize body", "POST", base + "/v1/orders", `{"requestId":"x3","customerId":"` + strings.Repeat("a", 2<<20) + `"}`, nil, 413, ""},
		{"wrong content type", "POST", base + "/v1/orders", `customerId=c`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, ""},
		{"missing request id", "POST", base + "/v1/orders", `{"customerId":"c","currency":"EUR"}`, nil, 400, "request_id"},
		{"unknown order", "GET", base + "/v1/orders/no-such-order", "", nil, 404, ""},
		{"unknown order command", "POST", base + "/v1/orders/no-such-order:place", `{}`, []string{"Idempotency-Key", key()}, 404, ""},
		{"conflict: order exists", "POST", base + "/v1/orders", `{"orderId":"` + id + `","customerId":"c","currency":"EUR"}`, []string{"Idempotency-Key", key()}, 409, ""},
		{"conflict: stale expectedRevision", "POST", o + "/items", `{"sku":"Z","quantity":"1","unitPrice":"1","expectedRevision":"999999"}`, []string{"Idempotency-Key", key()}, 409, ""},
		{"failed If-Match", "POST", o + "/items", `{"sku":"Z","quantity":"1","unitPrice":"1"}`, []string{"Idempotency-Key", key(), "If-Match", `"999999"`}, 412, ""},
		{"malformed If-Match", "POST", o + "/items", `{"sku":"Z","quantity":"1","unitPrice":"1"}`, []string{"Idempotency-Key", key(), "If-Match", `abc`}, 400, ""},
		{"illegal transition", "POST", base + "/v1/orders/" + placed + "/items", `{"sku":"Z","quantity":"1","unitPrice":"1"}`, []string{"Idempotency-Key", key()}, 400, ""},
		{"unknown enum", "POST", base + "/v1/orders/" + placed + "/payments", `{"outcome":"PAYMENT_OUTCOME_MAYBE"}`, []string{"Idempotency-Key", key()}, 400, ""},
		{"read model behind", "GET", o, "", []string{"X-Min-Position", "99999999"}, 503, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, tc.method, tc.url, tc.body, tc.headers...)
			if r.code != tc.want {
				t.Fatalf("HTTP %d, want %d: %.300s", r.code, tc.want, r.raw)
			}
			if _, ok := r.body["code"]; !ok || r.body["message"] == nil {
				t.Fatalf("not the status JSON shape: %.300s", r.raw)
			}
			if tc.mentions != "" && !strings.Contains(r.str("message"), tc.mentions) {
				t.Fatalf("message %q does not name %q", r.str("message"), tc.mentions)
			}
			if strings.Contains(r.raw, "goroutine") || strings.Contains(r.raw, ".go:") {
				t.Fatalf("internal detail leaked: %.300s", r.raw)
			}
		})
	}
}

func TestIdempotencyKeyRetry(t *testing.T) {
	base := start(t)
	k := key()
	body := `{"customerId":"idem-cust","currency":"EUR"}`
	a := expect(t, do(t, "POST", base+"/v1/orders", body, "Idempotency-Key", k), 200)
	b := expect(t, do(t, "POST", base+"/v1/orders", body, "Idempotency-Key", k), 200)
	if a.raw != b.raw {
		t.Fatalf("retry answered differently:\n%s\n%s", a.raw, b.raw)
	}
	id := a.str("order", "orderId")
	add := `{"sku":"A","quantity":"1","unitPrice":"5"}`
	k2 := key()
	x := expect(t, do(t, "POST", base+"/v1/orders/"+id+"/items", add, "Idempotency-Key", k2), 200)
	y := expect(t, do(t, "POST", base+"/v1/orders/"+id+"/items", add, "Idempotency-Key", k2), 200)
	if x.raw != y.raw {
		t.Fatalf("retried AddItem answered differently")
	}
	list := expect(t, do(t, "GET", base+"/v1/orders?customerId=idem-cust", "", "X-Min-Position", y.str("position")), 200)
	orders, _ := list.body["orders"].([]any)
	if len(orders) != 1 {
		t.Fatalf("%d orders after a retried create, want 1", len(orders))
	}
	if v := orders[0].(map[string]any)["version"]; v != float64(2) {
		t.Fatalf("order version %v after a retried AddItem, want 2 (one event each)", v)
	}
}

func TestOpenAPIServedAndValid(t *testing.T) {
	base := start(t)
	r := expect(t, do(t, "GET", base+"/openapi.json", ""), 200)
	var doc2 openapi2.T
	if err := json.Unmarshal([]byte(r.raw), &doc2); err != nil {
		t.Fatal(err)
	}
	doc3, err := openapi2conv.ToV3(&doc2)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc3.Validate(t.Context()); err != nil {
		t.Fatalf("OpenAPI document invalid: %v", err)
	}
	routes := httpRules(t)
	if len(routes) < 20 {
		t.Fatalf("only %d routes found in http.yaml", len(routes))
	}
	for _, rt := range routes {
		// The document names path parameters in lowerCamel, as the JSON
		// mapping does.
		path := regexp.MustCompile(`_([a-z])`).ReplaceAllStringFunc(rt.path, func(m string) string { return strings.ToUpper(m[1:]) })
		item := doc2.Paths[path]
		if item == nil || item.GetOperation(strings.ToUpper(rt.method)) == nil {
			t.Errorf("route %s %s is served but missing from the OpenAPI document", strings.ToUpper(rt.method), rt.path)
		}
	}
}

type route struct{ method, path string }

// httpRules reads the routes the gateway serves from the HTTP rules file.
func httpRules(t *testing.T) []route {
	t.Helper()
	f, err := os.Open("../../api/orders/v1/http.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	re := regexp.MustCompile(`^\s+(get|post|put|patch|delete): (\S+)`)
	var out []route
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			out = append(out, route{m[1], m[2]})
		}
	}
	return out
}
