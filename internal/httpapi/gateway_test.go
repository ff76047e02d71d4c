package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/api/openapi"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/internal/httpapi"
	"github.com/orderstream/orderstream/projections"
	"github.com/orderstream/orderstream/services/audit"
	"github.com/orderstream/orderstream/services/command"
	"github.com/orderstream/orderstream/services/query"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// env is a whole write and read path on loopback: an embedded nats-server,
// the event store, a projection runner with its read model, the command,
// query, admin and audit services on a real gRPC server, and the gateway on
// a real HTTP server calling them over a real gRPC connection.
type env struct {
	base   string
	http   *http.Client
	store  *eventstore.Store
	js     jetstream.JetStream
	conn   *grpc.ClientConn
	cmd    ordersv1.OrderCommandServiceClient
	query  ordersv1.OrderQueryServiceClient
	seenMD sync.Map // x-correlation-id → metadata.MD the server received
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func start(t testing.TB, opts ...httpapi.Option) *env { return startStore(t, nil, opts...) }

// startStore is start with the event store configured by storeOpts.
func startStore(t testing.TB, storeOpts []eventstore.Option, opts ...httpapi.Option) *env {
	t.Helper()
	ns := estest.StartServer(t)
	_, js := estest.Connect(t, ns)
	store, err := eventstore.New(t.Context(), js, append([]eventstore.Option{eventstore.WithStorage(jetstream.MemoryStorage)}, storeOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := projections.Open(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	runner, err := projections.NewRunner(store, dir, projections.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("projection runner: %v", err)
		}
		_ = dir.Close()
	})

	e := &env{store: store, js: js}
	seen := func(ctx context.Context) {
		if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get("x-correlation-id")) > 0 {
			e.seenMD.Store(md.Get("x-correlation-id")[0], md)
		}
	}
	gs := grpc.NewServer(grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		seen(ctx)
		return h(ctx, req)
	}), grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		seen(ss.Context())
		return h(srv, ss)
	}))
	cmd, err := command.New(store)
	if err != nil {
		t.Fatal(err)
	}
	qry, err := query.New(runner, quiet(), query.WithFeed(runner.Feed()), query.WithHistory(store), query.WithHead(store))
	if err != nil {
		t.Fatal(err)
	}
	ordersv1.RegisterOrderCommandServiceServer(gs, cmd)
	ordersv1.RegisterOrderQueryServiceServer(gs, qry)
	admin, err := query.NewAdmin(runner, store, quiet())
	if err != nil {
		t.Fatal(err)
	}
	aud, err := audit.New(store, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ordersv1.RegisterOrderAdminServiceServer(gs, admin)
	ordersv1.RegisterOrderAuditServiceServer(gs, aud)
	// PaymentAdminService is deliberately not served: its routes answer 501.
	e.conn = serve(t, gs)
	e.cmd = ordersv1.NewOrderCommandServiceClient(e.conn)
	e.query = ordersv1.NewOrderQueryServiceClient(e.conn)
	e.base, e.http = gatewayOver(t, e.conn, opts...)
	return e
}

// serve runs gs on a loopback port until t ends and returns a client
// connection to it.
func serve(t testing.TB, gs *grpc.Server) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return dial(t, lis.Addr().String())
}

func dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// gatewayOver serves the gateway over conn on a loopback HTTP server.
func gatewayOver(t testing.TB, conn *grpc.ClientConn, opts ...httpapi.Option) (string, *http.Client) {
	t.Helper()
	h, err := httpapi.New(t.Context(), conn, append([]httpapi.Option{httpapi.WithLogger(quiet())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL, srv.Client()
}

type reply struct {
	code   int
	header http.Header
	body   map[string]any
	raw    string
}

var keySeq atomic.Int64

// key returns a fresh idempotency key.
func key() string { return fmt.Sprintf("key-%d", keySeq.Add(1)) }

// do sends one request; body, when not empty, goes as application/json
// unless headers set another Content-Type (or "" to send none). headers
// are name, value pairs.
func (e *env) do(t testing.TB, method, path, body string, headers ...string) reply {
	t.Helper()
	return do(t, e.http, method, e.base+path, body, headers...)
}

func do(t testing.TB, c *http.Client, method, url, body string, headers ...string) reply {
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
		req.Header.Add(headers[i], headers[i+1])
		if headers[i] == "Content-Type" {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return replyOf(res, b)
}

// replyOf is the reply of res, whose body was raw.
func replyOf(res *http.Response, raw []byte) reply {
	r := reply{code: res.StatusCode, header: res.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

// get walks r.body along path (map keys, or list indexes) and returns the
// value there.
func (r reply) get(path ...string) any {
	var v any = r.body
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			i, _ := strconv.Atoi(p)
			if i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func (r reply) str(path ...string) string { s, _ := r.get(path...).(string); return s }

func expect(t testing.TB, r reply, code int) reply {
	t.Helper()
	if r.code != code {
		t.Fatalf("HTTP %d, want %d: %.500s", r.code, code, r.raw)
	}
	return r
}

// etag is the ETag the gateway sends for revision.
func etag(revision string) string { return `"` + revision + `"` }

const newOrder = `{"customerId":"rest-1","currency":"EUR","lines":[{"sku":"BOOK-1","quantity":"2","unitPrice":"1250"}],
	"shippingAddress":{"name":"Ada","line1":"1 Analytical Way","city":"London","postalCode":"N1","country":"GB"}}`

// loadEvents returns the order's events straight from the event store.
func (e *env) loadEvents(t testing.TB, id string) []eventstore.Recorded {
	t.Helper()
	evs, err := e.store.Load(t.Context(), id)
	if err != nil {
		t.Fatalf("load %s: %v", id, err)
	}
	return evs
}

func TestOrderLifecycleOverREST(t *testing.T) {
	e := start(t)
	c := expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key(), "X-Actor", "alice", "X-Correlation-Id", "corr-life"), 200)
	id := c.str("order", "orderId")
	if id == "" || c.str("order", "status") != "ORDER_STATUS_DRAFT" || c.str("order", "total") != "2500" ||
		c.str("order", "lines", "0", "lineTotal") != "2500" || c.str("order", "shippingAddress", "city") != "London" {
		t.Fatalf("created: %s", c.raw)
	}
	if c.header.Get("ETag") != etag(c.str("revision")) || c.str("revision") != c.str("order", "revision") {
		t.Fatalf("ETag %q for revision %s", c.header.Get("ETag"), c.str("revision"))
	}
	if c.header.Get("Content-Type") != "application/json" {
		t.Fatalf("Content-Type %q", c.header.Get("Content-Type"))
	}
	o := "/v1/orders/" + id
	steps := []struct {
		method, path, body string
		ifMatch            bool
		status, total      string
	}{
		{"POST", o + "/items", `{"sku":"PEN-9","quantity":"3","unitPrice":"199"}`, true, "ORDER_STATUS_DRAFT", "3097"},
		{"PATCH", o + "/items/PEN-9", `{"quantity":1}`, true, "ORDER_STATUS_DRAFT", "2699"},
		{"DELETE", o + "/items/PEN-9", "", true, "ORDER_STATUS_DRAFT", "2500"},
		{"PUT", o + "/shipping-address", `{"shippingAddress":{"name":"Ada","line1":"2 Way","city":"Leeds","postalCode":"LS1","country":"GB"}}`, false, "ORDER_STATUS_DRAFT", "2500"},
		{"POST", o + ":place", ``, true, "ORDER_STATUS_PLACED", "2500"},
		{"POST", o + "/payments", `{"outcome":"PAYMENT_OUTCOME_AUTHORIZED","paymentRef":"psp-1","amount":"2500"}`, false, "ORDER_STATUS_PAID", "2500"},
		{"POST", o + ":ship", `{"carrier":"DHL","trackingNumber":"T1"}`, true, "ORDER_STATUS_SHIPPED", "2500"},
		{"POST", o + ":deliver", `{}`, true, "ORDER_STATUS_DELIVERED", "2500"},
	}
	last := c
	keys := []string{c.str("order", "orderId")}
	for _, s := range steps {
		h := []string{"Idempotency-Key", key()}
		keys = append(keys, h[1])
		if s.ifMatch {
			h = append(h, "If-Match", last.header.Get("ETag"))
		}
		r := expect(t, e.do(t, s.method, s.path, s.body, h...), 200)
		if r.str("order", "status") != s.status || r.str("order", "total") != s.total {
			t.Fatalf("%s %s: status %s total %s, want %s %s: %s", s.method, s.path, r.str("order", "status"), r.str("order", "total"), s.status, s.total, r.raw)
		}
		if r.header.Get("ETag") != etag(r.str("revision")) {
			t.Fatalf("%s %s: ETag %q, revision %s", s.method, s.path, r.header.Get("ETag"), r.str("revision"))
		}
		last = r
	}
	if last.str("order", "paymentRef") != "psp-1" || last.str("order", "carrier") != "DHL" || last.str("order", "shippingAddress", "city") != "Leeds" ||
		last.str("order", "paidAmount") != "2500" || last.get("order", "lines").([]any) == nil || len(last.get("order", "lines").([]any)) != 1 {
		t.Fatalf("delivered order: %s", last.raw)
	}

	g := expect(t, e.do(t, "GET", o, "", "X-Min-Position", last.str("position")), 200)
	if g.str("order", "status") != "ORDER_STATUS_DELIVERED" || g.header.Get("ETag") != last.header.Get("ETag") || g.str("order", "total") != "2500" {
		t.Fatalf("GET after deliver: %s (ETag %s)", g.raw, g.header.Get("ETag"))
	}

	// One event per command, each carrying the command's key and who sent it.
	evs := e.loadEvents(t, id)
	if len(evs) != 1+len(steps) {
		t.Fatalf("%d events, want %d", len(evs), 1+len(steps))
	}
	if evs[0].Meta.Actor != "alice" || evs[0].Meta.CorrelationID != "corr-life" {
		t.Fatalf("created event metadata: %+v", evs[0].Meta)
	}
	for i, ev := range evs[1:] {
		if ev.Meta.RequestID != keys[i+1] {
			t.Fatalf("event %d (%s): request id %q, want the Idempotency-Key %q", i+1, ev.Type, ev.Meta.RequestID, keys[i+1])
		}
	}
}

// TestEscapedOrderIDs addresses an order whose id holds characters that
// are special in paths.
func TestEscapedOrderIDs(t *testing.T) {
	e := start(t)
	const id, escaped = "shop:2026:42", "shop%3A2026%3A42"
	c := expect(t, e.do(t, "POST", "/v1/orders", `{"orderId":"`+id+`","customerId":"c","currency":"EUR","lines":[{"sku":"A","quantity":"1","unitPrice":"1"}],"shippingAddress":{"name":"A","line1":"1 St","city":"X","postalCode":"1","country":"GB"}}`, "Idempotency-Key", key()), 200)
	if c.str("order", "orderId") != id {
		t.Fatalf("created: %s", c.raw)
	}
	p := expect(t, e.do(t, "POST", "/v1/orders/"+escaped+":place", `{}`, "Idempotency-Key", key(), "If-Match", c.header.Get("ETag")), 200)
	for _, path := range []string{"/v1/orders/" + escaped, "/v1/orders/" + id} {
		g := expect(t, e.do(t, "GET", path, "", "X-Min-Position", p.str("position")), 200)
		if g.str("order", "orderId") != id || g.str("order", "status") != "ORDER_STATUS_PLACED" {
			t.Fatalf("GET %s: %s", path, g.raw)
		}
	}
	h := expect(t, e.do(t, "GET", "/v1/orders/"+id+"/history", ""), 200)
	if evs, _ := h.get("events").([]any); len(evs) != 2 {
		t.Fatalf("history: %s", h.raw)
	}
}

func TestErrorStatuses(t *testing.T) {
	e := start(t)
	c := expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200)
	id := c.str("order", "orderId")
	o := "/v1/orders/" + id
	placed := expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200).str("order", "orderId")
	expect(t, e.do(t, "POST", "/v1/orders/"+placed+":place", `{}`, "Idempotency-Key", key()), 200)

	cases := []struct {
		name         string
		method, path string
		body         string
		headers      []string
		want         int
		grpcCode     float64 // -1: do not check
		mentions     string
	}{
		{"malformed JSON", "POST", "/v1/orders", `{"customerId":`, []string{"Idempotency-Key", key()}, 400, 3, ""},
		{"not an object", "POST", "/v1/orders", `[1,2]`, []string{"Idempotency-Key", key()}, 400, 3, ""},
		{"unknown field", "POST", "/v1/orders", `{"requestId":"x1","customerId":"c","currency":"EUR","colour":"red"}`, nil, 400, 3, `unknown field "colour"`},
		{"unknown nested field", "POST", "/v1/orders", `{"requestId":"x1","customerId":"c","currency":"EUR","lines":[{"sku":"A","qty":"1"}]}`, nil, 400, 3, `"qty"`},
		{"wrong type", "POST", "/v1/orders", `{"requestId":"x2","customerId":"c","currency":"EUR","lines":"many"}`, nil, 400, 3, ""},
		{"wrong number", "POST", o + "/items", `{"sku":"Z","quantity":"lots","unitPrice":"1"}`, []string{"Idempotency-Key", key()}, 400, 3, "quantity"},
		{"unknown enum", "POST", "/v1/orders/" + placed + "/payments", `{"outcome":"PAYMENT_OUTCOME_MAYBE"}`, []string{"Idempotency-Key", key()}, 400, 3, "PAYMENT_OUTCOME_MAYBE"},
		{"oversize body", "POST", "/v1/orders", `{"requestId":"x3","customerId":"` + strings.Repeat("a", httpapi.DefaultBodyLimit) + `"}`, nil, 413, 8, ""},
		{"form body", "POST", "/v1/orders", `customerId=c`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, 3, "Content-Type"},
		{"text body", "PUT", o + "/shipping-address", `{}`, []string{"Content-Type", "text/plain"}, 415, 3, ""},
		{"non-UTF-8 JSON", "POST", "/v1/orders", `{}`, []string{"Content-Type", "application/json; charset=latin1"}, 415, 3, ""},
		{"body without Content-Type", "POST", "/v1/orders", `{}`, []string{"Content-Type", ""}, 415, 3, ""},
		// A coded body is not decoded: 415 naming the coding, not the
		// 400 of JSON that does not parse.
		{"gzip body", "POST", "/v1/orders", "\x1f\x8b\x08\x00\x00\x00\x00\x00", []string{"Content-Encoding", "gzip"}, 415, 3, "Content-Encoding"},
		// A GET or a DELETE takes no body, of any type: 400, not a 415
		// that asks for JSON only to refuse it then.
		{"form body on DELETE", "DELETE", o + "/items/BOOK-1", `expectedRevision=1`, []string{"Idempotency-Key", key(), "Content-Type", "application/x-www-form-urlencoded"}, 400, 3, "body"},
		{"text body on GET", "GET", "/v1/orders", `customerId=c`, []string{"Content-Type", "text/plain"}, 400, 3, "body"},
		{"body without Content-Type on GET", "GET", "/v1/orders", `{}`, []string{"Content-Type", ""}, 400, 3, "body"},
		{"JSON body on DELETE", "DELETE", o + "/items/BOOK-1", `{"expectedRevision":"1"}`, []string{"Idempotency-Key", key()}, 400, 3, "body"},
		{"missing request id", "POST", "/v1/orders", `{"customerId":"c","currency":"EUR"}`, nil, 400, 3, "request_id"},
		{"Idempotency-Key contradicts requestId", "POST", "/v1/orders", `{"requestId":"a","customerId":"c","currency":"EUR"}`, []string{"Idempotency-Key", "b"}, 400, 3, "Idempotency-Key"},
		{"unknown order", "GET", "/v1/orders/no-such-order", "", nil, 404, 5, ""},
		{"unknown order command", "POST", "/v1/orders/no-such-order:place", `{}`, []string{"Idempotency-Key", key()}, 404, 5, ""},
		{"unknown route", "GET", "/v2/nothing", "", nil, 404, 5, "route"},
		{"wrong method", "PUT", "/v1/orders", `{}`, nil, 405, 12, ""},
		{"conflict: order exists", "POST", "/v1/orders", `{"orderId":"` + id + `","customerId":"c","currency":"EUR"}`, []string{"Idempotency-Key", key()}, 409, 6, ""},
		{"conflict: stale expectedRevision in body", "POST", o + "/items", `{"sku":"Z","quantity":"1","unitPrice":"1","expectedRevision":"999999"}`, []string{"Idempotency-Key", key()}, 409, 10, ""},
		{"failed If-Match", "POST", o + "/items", `{"sku":"Z","quantity":"1","unitPrice":"1"}`, []string{"Idempotency-Key", key(), "If-Match", `"999999"`}, 412, 10, ""},
		{"failed If-Match on DELETE", "DELETE", o + "/items/BOOK-1", "", []string{"Idempotency-Key", key(), "If-Match", `"999999"`}, 412, 10, ""},
		{"If-Match contradicts body", "POST", o + "/items", `{"sku":"Z","quantity":"1","unitPrice":"1","expectedRevision":"5"}`, []string{"Idempotency-Key", key(), "If-Match", `"6"`}, 400, 3, "If-Match"},
		{"malformed If-Match", "POST", o + "/items", `{"sku":"Z","quantity":"1","unitPrice":"1"}`, []string{"Idempotency-Key", key(), "If-Match", `abc`}, 400, 3, "If-Match"},
		// Strong comparison: a weak tag never matches (412, as a failed
		// If-Match on a command).
		{"weak If-Match", "POST", o + "/items", `{"sku":"Z","quantity":"1","unitPrice":"1"}`, []string{"Idempotency-Key", key(), "If-Match", `W/"1"`}, 412, 10, "If-Match"},
		{"two If-Match", "POST", o + "/items", `{"sku":"Z","quantity":"1","unitPrice":"1"}`, []string{"Idempotency-Key", key(), "If-Match", `"1"`, "If-Match", `"2"`}, 400, 3, "If-Match"},
		{"unknown query parameter", "GET", "/v1/orders?customer=pager", "", nil, 400, 3, `"customer"`},
		{"unknown nested query parameter", "GET", o + "?consistency.minPos=3", "", nil, 400, 3, `"consistency.minPos"`},
		{"unknown query parameter on a stream", "GET", "/v1/events?colour=red", "", nil, 400, 3, `"colour"`},
		{"unknown event type on a stream, refused by the service", "GET", "/v1/events?eventTypes=Nope", "", nil, 400, 3, "event_types"},
		{"unknown status on a watch", "GET", "/v1/orders:watch?status=FOO", "", nil, 400, 3, ""},
		{"malformed query parameter", "GET", "/v1/orders?pageSize=many", "", nil, 400, 3, "page_size"},
		{"malformed X-Min-Position", "GET", o, "", []string{"X-Min-Position", "soon"}, 400, 3, "X-Min-Position"},
		{"illegal transition", "POST", "/v1/orders/" + placed + "/items", `{"sku":"Z","quantity":"1","unitPrice":"1"}`, []string{"Idempotency-Key", key()}, 400, 9, ""},
		{"invalid argument from the service", "POST", o + "/items", `{"sku":"Z","quantity":"-1","unitPrice":"1"}`, []string{"Idempotency-Key", key()}, 400, 3, "quantity"},
		{"min position past the log", "GET", o + "?consistency.maxWait=0.05s", "", []string{"X-Min-Position", "99999999"}, 400, 11, "past the log"},
		{"service not running", "GET", "/v1/admin/parked-payments", "", nil, 501, 12, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(t, tc.method, tc.path, tc.body, tc.headers...)
			if r.code != tc.want {
				t.Fatalf("HTTP %d, want %d: %.300s", r.code, tc.want, r.raw)
			}
			r = unwrapStreamError(t, tc.path, r)
			assertStatusJSON(t, r)
			if r.get("code") != tc.grpcCode {
				t.Errorf("gRPC code %v, want %v", r.get("code"), tc.grpcCode)
			}
			if tc.mentions != "" && !strings.Contains(r.str("message"), tc.mentions) {
				t.Errorf("message %q does not name %q", r.str("message"), tc.mentions)
			}
		})
	}
	// None of the failed commands changed anything.
	if n := len(e.loadEvents(t, id)); n != 1 {
		t.Fatalf("%d events on %s after failed commands, want 1", n, id)
	}
}

// unwrapStreamError returns, for a refusal of a stream route (path), the
// status its one line {"error": status} holds, as a stream's refusals by
// the service answer it, failing unless the reply is that line alone;
// other replies as they are.
func unwrapStreamError(t testing.TB, path string, r reply) reply {
	t.Helper()
	if !strings.HasPrefix(path, "/v1/events") && !strings.Contains(path, ":watch") {
		return r
	}
	inner, ok := r.body["error"].(map[string]any)
	if !ok || len(r.body) != 1 || !strings.HasSuffix(r.raw, "}\n") || strings.Count(r.raw, "\n") != 1 {
		t.Fatalf("a stream's refusal is not one {\"error\": status} line: %.300s", r.raw)
	}
	b, err := json.Marshal(inner)
	if err != nil {
		t.Fatal(err)
	}
	return reply{code: r.code, header: r.header, body: inner, raw: string(b)}
}

// assertStatusJSON checks the grpc-gateway error shape and that nothing
// internal leaked.
func assertStatusJSON(t testing.TB, r reply) {
	t.Helper()
	if r.header.Get("Content-Type") != "application/json" {
		t.Errorf("Content-Type %q", r.header.Get("Content-Type"))
	}
	if _, ok := r.get("code").(float64); !ok {
		t.Fatalf("no numeric code: %.300s", r.raw)
	}
	if _, ok := r.get("message").(string); !ok {
		t.Fatalf("no message: %.300s", r.raw)
	}
	if _, ok := r.get("details").([]any); !ok {
		t.Fatalf("no details list: %.300s", r.raw)
	}
	for _, leak := range []string{"goroutine", ".go:", "127.0.0.1", "dial tcp", "nats:", "sql"} {
		if strings.Contains(r.raw, leak) {
			t.Fatalf("internal detail %q leaked: %.300s", leak, r.raw)
		}
	}
}

func TestBodyLimitOption(t *testing.T) {
	e := start(t, httpapi.WithBodyLimit(64))
	r := expect(t, e.do(t, "POST", "/v1/orders", `{"customerId":"`+strings.Repeat("x", 64)+`","currency":"EUR"}`, "Idempotency-Key", key()), 413)
	assertStatusJSON(t, r)
	if !strings.Contains(r.str("message"), "64 bytes") {
		t.Fatalf("message %q", r.str("message"))
	}
	expect(t, e.do(t, "POST", "/v1/orders", `{"customerId":"c","currency":"EUR"}`, "Idempotency-Key", key()), 200)
}

// TestSlowBody trickles a body slower than the gateway waits for it.
func TestSlowBody(t *testing.T) {
	e := start(t, httpapi.WithBodyTimeout(100*time.Millisecond))
	// Half of the announced body, then nothing: a JSON body is not
	// received in time (408); one of another type is refused before it is
	// read (415). Either way the connection is closed after the answer,
	// not held while the server waits for the rest of the body.
	for ctype, want := range map[string]int{"application/json": http.StatusRequestTimeout, "text/plain": http.StatusUnsupportedMediaType} {
		t.Run(ctype, func(t *testing.T) {
			c, err := net.Dial("tcp", strings.TrimPrefix(e.base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, "POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Type: "+ctype+"\r\nContent-Length: 40\r\n\r\n{\"customerId\":\"c\""); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			if res.StatusCode != want {
				t.Fatalf("HTTP %d: %s, want %d", res.StatusCode, b, want)
			}
			// (The deadline bounds how long the test waits to see it.)
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("after its %d the server holds the connection: %v", res.StatusCode, err)
			}
		})
	}
}

func TestIdempotencyKeyRetry(t *testing.T) {
	e := start(t)
	k := key()
	a := expect(t, e.do(t, "POST", "/v1/orders", `{"customerId":"idem","currency":"EUR"}`, "Idempotency-Key", k), 200)
	b := expect(t, e.do(t, "POST", "/v1/orders", `{"customerId":"idem","currency":"EUR"}`, "Idempotency-Key", k), 200)
	if a.raw != b.raw || a.header.Get("ETag") != b.header.Get("ETag") {
		t.Fatalf("retried create answered differently:\n%s\n%s", a.raw, b.raw)
	}
	id := a.str("order", "orderId")
	if n := len(e.loadEvents(t, id)); n != 1 {
		t.Fatalf("%d events after a retried create, want 1", n)
	}

	// A retry is recognised from the key even when the order has moved on
	// and the first attempt's If-Match is stale by now.
	add := `{"sku":"A","quantity":"1","unitPrice":"5"}`
	k2 := key()
	x := expect(t, e.do(t, "POST", "/v1/orders/"+id+"/items", add, "Idempotency-Key", k2, "If-Match", a.header.Get("ETag")), 200)
	y := expect(t, e.do(t, "POST", "/v1/orders/"+id+"/items", add, "Idempotency-Key", k2, "If-Match", a.header.Get("ETag")), 200)
	if x.raw != y.raw {
		t.Fatalf("retried AddItem answered differently:\n%s\n%s", x.raw, y.raw)
	}
	// DELETE carries no body: the key still reaches request_id.
	k3 := key()
	d1 := expect(t, e.do(t, "DELETE", "/v1/orders/"+id+"/items/A", "", "Idempotency-Key", k3), 200)
	d2 := expect(t, e.do(t, "DELETE", "/v1/orders/"+id+"/items/A", "", "Idempotency-Key", k3), 200)
	if d1.raw != d2.raw {
		t.Fatalf("retried RemoveItem answered differently:\n%s\n%s", d1.raw, d2.raw)
	}
	evs := e.loadEvents(t, id)
	if len(evs) != 3 {
		t.Fatalf("%d events after create, add, remove (each sent twice), want 3", len(evs))
	}
	for i, want := range []string{k, k2, k3} {
		if evs[i].Meta.RequestID != want {
			t.Fatalf("event %d request id %q, want %q", i, evs[i].Meta.RequestID, want)
		}
	}
	// The same key on a different order's command is that command's key,
	// not a replay of another.
	other := expect(t, e.do(t, "POST", "/v1/orders", `{"customerId":"idem","currency":"EUR"}`, "Idempotency-Key", key()), 200).str("order", "orderId")
	if other == id {
		t.Fatal("a new key created the same order")
	}
}

func TestHeadersForwarded(t *testing.T) {
	e := start(t)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	k := key()
	expect(t, e.do(t, "POST", "/v1/orders", `{"customerId":"fwd","currency":"EUR"}`,
		"Idempotency-Key", k, "Authorization", "Bearer token-1", "traceparent", tp, "tracestate", "vendor=1",
		"X-Actor", "bob", "X-Correlation-Id", "corr-fwd", "X-Causation-Id", "cause-1", "X-Internal-Secret", "no"), 200)
	v, ok := e.seenMD.Load("corr-fwd")
	if !ok {
		t.Fatal("the server saw no call with x-correlation-id corr-fwd")
	}
	md := v.(metadata.MD)
	for k, want := range map[string]string{
		"authorization": "Bearer token-1", "traceparent": tp, "tracestate": "vendor=1", "x-actor": "bob",
		"x-correlation-id": "corr-fwd", "x-causation-id": "cause-1", "idempotency-key": k,
	} {
		if got := md.Get(k); len(got) != 1 || got[0] != want {
			t.Errorf("metadata %s = %q, want [%q]", k, got, want)
		}
	}
	if got := md.Get("x-internal-secret"); len(got) != 0 {
		t.Errorf("unlisted header forwarded: %q", got)
	}
}

func TestQueriesOverREST(t *testing.T) {
	e := start(t)
	var last reply
	for i := range 5 {
		last = expect(t, e.do(t, "POST", "/v1/orders", fmt.Sprintf(`{"customerId":"pager","currency":"USD","lines":[{"sku":"A","quantity":"%d","unitPrice":"100"}]}`, i+1), "Idempotency-Key", key()), 200)
	}

	// Read-your-writes: the GET right after the command sees it.
	id := last.str("order", "orderId")
	g := expect(t, e.do(t, "GET", "/v1/orders/"+id, "", "X-Min-Position", last.str("position")), 200)
	if g.str("order", "total") != "500" || g.header.Get("ETag") != last.header.Get("ETag") {
		t.Fatalf("GET: %s, ETag %q want %q", g.raw, g.header.Get("ETag"), last.header.Get("ETag"))
	}
	p, _ := strconv.ParseUint(g.str("position"), 10, 64)
	if want, _ := strconv.ParseUint(last.str("position"), 10, 64); p < want {
		t.Fatalf("read model position %d, asked for %d", p, want)
	}
	// The ETag of a GET is usable as If-Match; a change makes it stale.
	expect(t, e.do(t, "POST", "/v1/orders/"+id+"/items", `{"sku":"B","quantity":"1","unitPrice":"1"}`, "Idempotency-Key", key(), "If-Match", g.header.Get("ETag")), 200)
	expect(t, e.do(t, "POST", "/v1/orders/"+id+"/items", `{"sku":"C","quantity":"1","unitPrice":"1"}`, "Idempotency-Key", key(), "If-Match", g.header.Get("ETag")), 412)

	// Paging: every order exactly once, two at a time; the header and the
	// query parameter both work.
	seen := map[string]bool{}
	url := "/v1/orders?customerId=pager&pageSize=2&consistency.minPosition=" + last.str("position")
	pages := 0
	for ; ; pages++ {
		r := expect(t, e.do(t, "GET", url, ""), 200)
		orders, _ := r.get("orders").([]any)
		if len(orders) > 2 {
			t.Fatalf("page of %d, asked for 2", len(orders))
		}
		for _, o := range orders {
			oid := o.(map[string]any)["orderId"].(string)
			if seen[oid] {
				t.Fatalf("order %s on two pages", oid)
			}
			seen[oid] = true
		}
		next := r.str("nextPageToken")
		if next == "" {
			break
		}
		url = "/v1/orders?customerId=pager&pageSize=2&pageToken=" + next
	}
	if len(seen) != 5 || pages != 2 {
		t.Fatalf("paged through %d orders on %d pages, want 5 on 3", len(seen), pages+1)
	}
	s := expect(t, e.do(t, "GET", "/v1/customers/pager/summary", "", "X-Min-Position", last.str("position")), 200)
	if s.str("summary", "orderCount") != "5" {
		t.Fatalf("summary: %s", s.raw)
	}
	// Filters by enum name.
	l := expect(t, e.do(t, "GET", "/v1/orders?customerId=pager&status=ORDER_STATUS_PLACED", ""), 200)
	if orders, _ := l.get("orders").([]any); len(orders) != 0 {
		t.Fatalf("placed orders: %s", l.raw)
	}
	expect(t, e.do(t, "GET", "/v1/orders?status=ORDER_STATUS_NOPE", ""), 400)
}

// TestStreamsAreNDJSON checks server streaming over REST: a 200 with one
// JSON object per line, flushed per message.
func TestStreamsAreNDJSON(t *testing.T) {
	e := start(t)
	var pos string
	for range 3 {
		pos = expect(t, e.do(t, "POST", "/v1/orders", `{"customerId":"s","currency":"EUR"}`, "Idempotency-Key", key()), 200).str("position")
	}
	lines := func(r reply) []map[string]any {
		t.Helper()
		if r.header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("Content-Type %q", r.header.Get("Content-Type"))
		}
		if !strings.HasSuffix(r.raw, "\n") {
			t.Fatalf("stream does not end in a newline: %q", r.raw)
		}
		var out []map[string]any
		for l := range strings.Lines(r.raw) {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			out = append(out, m)
		}
		return out
	}
	evs := lines(expect(t, e.do(t, "GET", "/v1/events", ""), 200))
	if len(evs) != 3 {
		t.Fatalf("%d lines, want 3 events", len(evs))
	}
	lastEv := evs[2]["result"].(map[string]any)["event"].(map[string]any)
	if lastEv["type"] != "OrderCreated" || lastEv["position"] != pos {
		t.Fatalf("last event: %v", lastEv)
	}
	v := lines(expect(t, e.do(t, "POST", "/v1/events:verify", ""), 200))
	sum, _ := v[len(v)-1]["result"].(map[string]any)["summary"].(map[string]any)
	if sum == nil || sum["eventsChecked"] != "3" || sum["ordersBroken"] != "0" {
		t.Fatalf("verify: %v", v)
	}
	// A stream that fails before its first message answers the error's
	// status with a single error line.
	r := expect(t, e.do(t, "GET", "/v1/events?eventTypes=NoSuchEvent", ""), 400)
	if r.header.Get("Content-Type") != "application/json" || r.get("error", "code") != float64(3) ||
		!strings.Contains(r.str("error", "message"), "NoSuchEvent") || strings.Count(r.raw, "\n") != 1 {
		t.Fatalf("early stream error: %q", r.raw)
	}
}

// TestOpenAPIDocuments checks that the gateway serves the generated
// documents as they are, and that the OpenAPI 3 one has every route of
// http.yaml, read from the 2.0 document (internal/app's tests check it
// against every route ordersd serves, api/openapi/gen's test validates it).
func TestOpenAPIDocuments(t *testing.T) {
	e := start(t)
	for path, want := range map[string][]byte{"/openapi.json": openapi.Spec, "/openapi-v2.json": openapi.SpecV2} {
		r := expect(t, e.do(t, "GET", path, ""), 200)
		if r.header.Get("Content-Type") != "application/json" || r.raw != string(want) {
			t.Errorf("%s: Content-Type %q, not the embedded document", path, r.header.Get("Content-Type"))
		}
	}
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(openapi.Spec, &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("/openapi.json: openapi %q, %v", doc.OpenAPI, err)
	}
	rules := httpRules(t)
	if len(rules) < 20 {
		t.Fatalf("only %d rules in http.yaml", len(rules))
	}
	for _, rt := range rules {
		if doc.Paths[rt.path][rt.method] == nil {
			t.Errorf("%s %s (%s) is missing from the OpenAPI document", strings.ToUpper(rt.method), rt.path, rt.selector)
		}
	}
}

// TestEveryRuleIsRouted sends each http.yaml route to a gateway whose gRPC
// server runs no service: a route the gateway registered reaches it (501),
// one it forgot is a routing 404.
func TestEveryRuleIsRouted(t *testing.T) {
	base, c := gatewayOver(t, serve(t, grpc.NewServer()))
	for _, rt := range httpRules(t) {
		path := strings.NewReplacer("{orderId}", "o-1", "{customerId}", "c-1", "{sku}", "s-1").Replace(rt.path)
		body := ""
		if rt.body {
			body = "{}"
		}
		r := do(t, c, strings.ToUpper(rt.method), base+path, body)
		if r.code != http.StatusNotImplemented {
			t.Errorf("%s %s (%s): HTTP %d, want 501 from the gRPC server: %s", strings.ToUpper(rt.method), path, rt.selector, r.code, r.raw)
		}
	}
}

func TestHealthAndReadiness(t *testing.T) {
	e := start(t)
	h := expect(t, e.do(t, "GET", "/healthz", ""), 200)
	if h.str("status") != "ok" {
		t.Fatalf("healthz: %s", h.raw)
	}
	r := expect(t, e.do(t, "GET", "/readyz", ""), 200)
	if r.str("status") != "ready" || r.str("checks", "grpc") != "ok" {
		t.Fatalf("readyz: %s", r.raw)
	}

	base, c := gatewayOver(t, e.conn,
		httpapi.WithReadinessCheck("store", func(context.Context) error { return nil }),
		httpapi.WithReadinessCheck("projection", func(context.Context) error { return errors.New("catching up: at 3") }),
		httpapi.WithReadinessCheck("stuck", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }),
	)
	r = expect(t, do(t, c, "GET", base+"/readyz", ""), 503)
	if r.str("status") != "not ready" || r.str("checks", "store") != "ok" || r.str("checks", "projection") != "catching up: at 3" ||
		r.str("checks", "stuck") == "ok" || r.str("checks", "grpc") != "ok" {
		t.Fatalf("readyz: %s", r.raw)
	}
	expect(t, do(t, c, "GET", base+"/healthz", ""), 200)
}

// TestServiceConn routes the query service over its own connection while
// the default connection reaches a server running nothing.
func TestServiceConn(t *testing.T) {
	e := start(t)
	empty := serve(t, grpc.NewServer())
	base, c := gatewayOver(t, empty, httpapi.WithServiceConn(ordersv1.OrderQueryService_ServiceDesc.ServiceName, e.conn))
	r := expect(t, do(t, c, "GET", base+"/v1/orders/nope", ""), 404)
	if r.str("message") != "order not found" {
		t.Fatalf("query over its own connection: %s", r.raw)
	}
	expect(t, do(t, c, "POST", base+"/v1/orders", `{"requestId":"r","customerId":"c","currency":"EUR"}`), 501)
	ready := expect(t, do(t, c, "GET", base+"/readyz", ""), 200)
	if ready.str("checks", "grpc") != "ok" || ready.str("checks", "grpc:"+e.conn.Target()) != "ok" {
		t.Fatalf("readyz: %s", ready.raw)
	}
	if _, err := httpapi.New(t.Context(), empty, httpapi.WithServiceConn("orders.v1.NoSuchService", e.conn)); !errors.Is(err, httpapi.ErrInvalidOption) {
		t.Fatalf("New with a connection for a service without routes: err = %v, want ErrInvalidOption", err)
	}
}

// fieldViolation is the field named by the BadRequest detail of an error
// answer.
func (r reply) fieldViolation() string {
	return r.str("details", "0", "fieldViolations", "0", "field")
}

// TestQueryParametersOnBodyRoutes checks that a query parameter on a
// command (body: "*", whose handler reads no query parameter) is refused
// rather than ignored: ?expectedRevision= must not append without its
// concurrency check.
func TestQueryParametersOnBodyRoutes(t *testing.T) {
	e := start(t)
	c := expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200)
	id := c.str("order", "orderId")
	o := "/v1/orders/" + id
	cases := []struct {
		name, method, path, body, param string
	}{
		{"stale expectedRevision", "POST", o + "/items?expectedRevision=1", `{"sku":"Z","quantity":"1","unitPrice":"1"}`, "expectedRevision"},
		{"requestId", "POST", o + "/items?requestId=q1", `{"sku":"Z","quantity":"1","unitPrice":"1"}`, "requestId"},
		{"PATCH", "PATCH", o + "/items/BOOK-1?expected_revision=1", `{"quantity":1}`, "expected_revision"},
		{"PUT", "PUT", o + "/shipping-address?shippingAddress.city=Rome", `{}`, "shippingAddress.city"},
		{"action", "POST", o + ":place?expectedRevision=1", `{}`, "expectedRevision"},
		{"create", "POST", "/v1/orders?customerId=x", `{"customerId":"c","currency":"EUR"}`, "customerId"},
		{"stream", "POST", "/v1/events:verify?x=1", `{}`, "x"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := unwrapStreamError(t, tc.path, expect(t, e.do(t, tc.method, tc.path, tc.body, "Idempotency-Key", key()), 400))
			assertStatusJSON(t, r)
			if r.get("code") != float64(3) || r.fieldViolation() != tc.param {
				t.Fatalf("code %v naming %q, want 3 naming %q: %s", r.get("code"), r.fieldViolation(), tc.param, r.raw)
			}
		})
	}
	if n := len(e.loadEvents(t, id)); n != 1 {
		t.Fatalf("%d events after refused commands, want 1", n)
	}
	// DELETE has no body: its query parameters are read.
	expect(t, e.do(t, "DELETE", o+"/items/BOOK-1?expectedRevision=999999", "", "Idempotency-Key", key()), 409)
	expect(t, e.do(t, "DELETE", o+"/items/BOOK-1?expectedRevision="+c.str("revision"), "", "Idempotency-Key", key()), 200)
}

// TestReservedCharactersInPathVariables: an id or SKU may hold any
// printable ASCII character, '/', '%', ':' and '?' included; a client sends
// it percent-encoded in the path, and the route's variable gets it decoded
// whole. Before, a SKU with a '/' could be added (in the body) but its line
// could never be changed or removed over REST: the route was matched on the
// decoded path and the request answered 404.
func TestReservedCharactersInPathVariables(t *testing.T) {
	e := start(t)
	c := expect(t, e.do(t, "POST", "/v1/orders", `{"orderId":"o/1:%?","customerId":"c","currency":"EUR"}`, "Idempotency-Key", key()), 200)
	id := c.str("order", "orderId")
	o := "/v1/orders/" + url.PathEscape(id)
	if got := expect(t, e.do(t, "GET", o, "", "X-Min-Position", c.str("position")), 200).str("order", "orderId"); got != "o/1:%?" {
		t.Fatalf("GET %s read order %q", o, got)
	}
	for _, sku := range []string{"A/B", "C%2FD", "E:F", "G?H#I"} {
		expect(t, e.do(t, "POST", o+"/items", `{"sku":`+strconv.Quote(sku)+`,"quantity":"1","unitPrice":"5"}`, "Idempotency-Key", key()), 200)
		line := o + "/items/" + url.PathEscape(sku)
		ch := expect(t, e.do(t, "PATCH", line, `{"quantity":"3"}`, "Idempotency-Key", key()), 200)
		if q := lineQuantity(ch, sku); q != "3" {
			t.Fatalf("PATCH %s: the line of %q has quantity %q; want 3:\n%s", line, sku, q, ch.raw)
		}
		rm := expect(t, e.do(t, "DELETE", line, "", "Idempotency-Key", key()), 200)
		if q := lineQuantity(rm, sku); q != "" {
			t.Fatalf("DELETE %s: the line of %q is still there:\n%s", line, sku, rm.raw)
		}
	}
}

// lineQuantity returns the quantity of the line of sku in a reply that
// carries an order, or "" when the order has no such line.
func lineQuantity(r reply, sku string) string {
	lines, _ := r.get("order", "lines").([]any)
	for _, l := range lines {
		if m, _ := l.(map[string]any); m["sku"] == sku {
			q, _ := m["quantity"].(string)
			return q
		}
	}
	return ""
}

// TestInvalidUTF8Parameters checks that a path or query parameter that is
// not UTF-8 once decoded is the client's mistake, not an internal error.
func TestInvalidUTF8Parameters(t *testing.T) {
	e := start(t)
	c := expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200)
	o := "/v1/orders/" + c.str("order", "orderId")
	cases := []struct {
		name, method, path, body string
		headers                  []string
	}{
		{"path", "GET", "/v1/orders/%FF", "", nil},
		{"path of a history", "GET", "/v1/orders/a%C3/history", "", nil},
		{"path of a command", "POST", "/v1/orders/%FF:place", `{}`, []string{"Idempotency-Key", key()}},
		{"path of a sub-resource", "DELETE", o + "/items/%FE%FF", "", []string{"Idempotency-Key", key()}},
		{"query value", "GET", "/v1/orders?customerId=%FF", "", nil},
		{"query name", "GET", "/v1/orders?%FF=1", "", nil},
		{"query on a stream", "GET", "/v1/events?orderIds=%FF", "", nil},
		{"Idempotency-Key", "POST", o + ":place", `{}`, []string{"Idempotency-Key", "k\xff"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := unwrapStreamError(t, tc.path, expect(t, e.do(t, tc.method, tc.path, tc.body, tc.headers...), 400))
			assertStatusJSON(t, r)
			if r.get("code") != float64(3) {
				t.Fatalf("gRPC code %v, want 3: %s", r.get("code"), r.raw)
			}
		})
	}
	// Valid multi-byte UTF-8 passes the gateway and meets the query
	// service's own rule for ids (printable ASCII), which names the proto
	// field rather than the gateway's query parameter.
	r := expect(t, e.do(t, "GET", "/v1/orders?customerId=%C3%A9", ""), 400)
	if f := r.str("details", "0", "fieldViolations", "0", "field"); f != "customer_id" {
		t.Fatalf("violation on %q, want the service's customer_id: %s", f, r.raw)
	}
}

// An Idempotency-Key names one request: the same body again gets the
// original answer, another body under it 422 with reason REQUEST_ID_REUSED,
// within the duplicate window and after it.
func TestIdempotencyKeyReusedForAnotherBody(t *testing.T) {
	const window = 100 * time.Millisecond // the smallest duplicate window nats-server accepts
	e := startStore(t, []eventstore.Option{eventstore.WithDuplicateWindow(window)})
	k := key()
	body := `{"customerId":"c","currency":"EUR","lines":[{"sku":"A","quantity":"1","unitPrice":"100"}]}`
	first := expect(t, e.do(t, "POST", "/v1/orders", body, "Idempotency-Key", k), 200)
	check := func(when string) {
		t.Helper()
		if again := expect(t, e.do(t, "POST", "/v1/orders", body, "Idempotency-Key", k), 200); again.raw != first.raw {
			t.Fatalf("%s: retry answered %s, want %s", when, again.raw, first.raw)
		}
		r := expect(t, e.do(t, "POST", "/v1/orders", strings.Replace(body, `"100"`, `"200"`, 1), "Idempotency-Key", k), 422)
		if r.str("details", "0", "reason") != "REQUEST_ID_REUSED" || r.get("code") != float64(6) {
			t.Fatalf("%s: %s", when, r.raw)
		}
	}
	check("within the duplicate window")
	estest.WaitDuplicateWindow(t, e.js, e.store.Subject("window-probe"), window)
	check("after the duplicate window")
}

// The walkthrough a client follows: the ETag after CreateOrder is "1", and
// If-Match "1" is what the next change takes, however many other orders
// were written in between; the ETag then counts on to "2".
func TestETagIsTheOrdersRevision(t *testing.T) {
	e := start(t)
	expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200)
	c := expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200)
	expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200)
	id := c.str("order", "orderId")
	if c.header.Get("ETag") != `"1"` || c.str("position") != "2" {
		t.Fatalf("created: ETag %s, position %s; want \"1\" and 2", c.header.Get("ETag"), c.str("position"))
	}
	a := expect(t, e.do(t, "POST", "/v1/orders/"+id+"/items", `{"sku":"Z","quantity":"1","unitPrice":"1"}`, "Idempotency-Key", key(), "If-Match", `"1"`), 200)
	if a.header.Get("ETag") != `"2"` || a.str("order", "revision") != "2" || a.str("position") != "4" {
		t.Fatalf("added: ETag %s, %s", a.header.Get("ETag"), a.raw)
	}
	expect(t, e.do(t, "POST", "/v1/orders/"+id+":place", `{}`, "Idempotency-Key", key(), "If-Match", `"1"`), 412)
	g := expect(t, e.do(t, "GET", "/v1/orders/"+id, "", "X-Min-Position", a.str("position")), 200)
	if g.header.Get("ETag") != `"2"` || g.str("order", "revision") != "2" {
		t.Fatalf("read model: ETag %s, %s", g.header.Get("ETag"), g.raw)
	}
}

// An order's history or state with events removed from the log answers
// DATA_LOSS over REST as over gRPC, naming the position before which they
// are missing (ErrorInfo EVENTS_MISSING), as the README says: its body
// was "internal error", as for a fault of the server.
func TestRESTHistoryWithEventsMissingNamesThePosition(t *testing.T) {
	e := startStore(t, []eventstore.Option{eventstore.WithMutableStream()})
	id := expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200).str("order", "orderId")
	expect(t, e.do(t, "POST", "/v1/orders/"+id+"/items", `{"sku":"PEN-1","quantity":"3","unitPrice":"200"}`, "Idempotency-Key", key()), 200)
	expect(t, e.do(t, "POST", "/v1/orders/"+id+":place", `{}`, "Idempotency-Key", key()), 200)
	evs := e.loadEvents(t, id)
	st, err := e.js.Stream(t.Context(), e.store.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(t.Context(), evs[1].Position); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/v1/orders/" + id + "/history", "/v1/orders/" + id + "/state?version=1"} {
		r := e.do(t, "GET", p, "")
		var body struct {
			Code    int
			Details []struct {
				Reason   string
				Metadata map[string]string
			}
		}
		if err := json.Unmarshal([]byte(r.raw), &body); err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
		if body.Code != 15 || len(body.Details) != 1 ||
			body.Details[0].Reason != "EVENTS_MISSING" || body.Details[0].Metadata["position"] != strconv.FormatUint(evs[2].Position, 10) {
			t.Errorf("GET %s: HTTP %d %s; want DATA_LOSS naming log position %d", p, r.code, r.raw, evs[2].Position)
		}
	}
}

// An export over REST that meets a message it cannot decode ends with the
// audit's DATA_LOSS as it is, naming the position to resume after: the
// gateway withholds every other DATA_LOSS text, and withheld this one too,
// so that a REST export could not get past such a message.
func TestRESTExportNamesTheUnreadableMessage(t *testing.T) {
	e := start(t)
	expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200)
	if _, err := e.js.Publish(t.Context(), e.store.Subject("headless-1"), []byte("not an event")); err != nil {
		t.Fatal(err)
	}
	r := expect(t, e.do(t, "GET", "/v1/events", ""), 200)
	ls := strings.Split(strings.TrimSuffix(r.raw, "\n"), "\n")
	var last struct {
		Error struct {
			Code    int
			Message string
			Details []struct {
				Reason   string
				Metadata map[string]string
			}
		}
	}
	if err := json.Unmarshal([]byte(ls[len(ls)-1]), &last); err != nil {
		t.Fatal(err)
	}
	if last.Error.Code != 15 || len(last.Error.Details) != 1 || last.Error.Details[0].Reason != "UNREADABLE_EVENT" || last.Error.Details[0].Metadata["position"] != "2" {
		t.Fatalf("the export's last line: %s; want DATA_LOSS naming position 2", ls[len(ls)-1])
	}
}

// A body field that names a path parameter (the order, the SKU) with
// another value than the path is refused: the path's value was taken over
// it without a word, and a PATCH of line A of one order whose body named
// another order and SKU changed line A of the first. The same values as
// the path's are accepted.
func TestBodyContradictingThePathIsRefused(t *testing.T) {
	e := start(t)
	c := expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200)
	id := c.str("order", "orderId")
	line := "/v1/orders/" + id + "/items/BOOK-1"
	for _, body := range []string{`{"orderId":"another","quantity":"7"}`, `{"order_id":"another","quantity":"7"}`, `{"sku":"PEN-9","quantity":"7"}`, `{"orderId":7,"quantity":"7"}`} {
		expect(t, e.do(t, "PATCH", line, body, "Idempotency-Key", key()), 400)
	}
	got := expect(t, e.do(t, "GET", "/v1/orders/"+id, "", "X-Min-Position", c.str("position")), 200)
	if got.str("order", "revision") != "1" {
		t.Fatalf("the order after refused changes: %.300s; want revision 1", got.raw)
	}
	expect(t, e.do(t, "PATCH", line, `{"orderId":"`+id+`","sku":"BOOK-1","quantity":"7"}`, "Idempotency-Key", key()), 200)
}

// A query parameter that names a path parameter with another value is
// refused as a body field is: DELETE /v1/orders/o/items/A?sku=B removed A,
// and GET /v1/orders/o?orderId=p answered o, the query ignored without a
// word. The path's own value is accepted.
func TestQueryContradictingThePathIsRefused(t *testing.T) {
	e := start(t)
	c := expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200)
	id := c.str("order", "orderId")
	line := "/v1/orders/" + id + "/items/BOOK-1"
	expect(t, e.do(t, "DELETE", line+"?sku=PEN-9", "", "Idempotency-Key", key()), 400)
	expect(t, e.do(t, "DELETE", line+"?orderId=another", "", "Idempotency-Key", key()), 400)
	expect(t, e.do(t, "GET", "/v1/orders/"+id+"?orderId=another", ""), 400)
	expect(t, e.do(t, "GET", "/v1/customers/cust-1/summary?customerId=another", ""), 400)
	got := expect(t, e.do(t, "GET", "/v1/orders/"+id+"?order_id="+id, "", "X-Min-Position", c.str("position")), 200)
	if got.str("order", "revision") != "1" {
		t.Fatalf("the order after refused changes: %.300s; want revision 1", got.raw)
	}
}

// A query that does not parse is refused, on every route, rather than
// read in part: a command's ?expectedRevision=99; (a ';', or a bad escape)
// was dropped whole, and the command ran without its concurrency check.
func TestMalformedQueryIsRefused(t *testing.T) {
	e := start(t)
	c := expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200)
	o := "/v1/orders/" + c.str("order", "orderId")
	for _, q := range []string{"expectedRevision=99;", "expectedRevision=99%", "expectedRevision=99%zz"} {
		expect(t, e.do(t, "POST", o+"/items?"+q, `{"sku":"B","quantity":"1","unitPrice":"5"}`, "Idempotency-Key", key()), 400)
		expect(t, e.do(t, "GET", "/v1/orders?pageSize=1&"+q, ""), 400)
	}
	got := expect(t, e.do(t, "GET", o, "", "X-Min-Position", c.str("position")), 200)
	if got.str("order", "revision") != "1" {
		t.Fatalf("the order after refused commands: %.300s; want revision 1", got.raw)
	}
}

// A route that takes no body refuses one rather than dropping it: a
// DELETE's expectedRevision sent in a body would otherwise be ignored and
// the line removed whatever the order's revision, and a GET's filter
// ignored. The order is unchanged.
func TestBodyOnARouteWithoutOneIsRefused(t *testing.T) {
	e := start(t)
	c := expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200)
	o := "/v1/orders/" + c.str("order", "orderId")
	expect(t, e.do(t, "DELETE", o+"/items/BOOK-1", `{"expectedRevision":"999999"}`, "Idempotency-Key", key()), 400)
	expect(t, e.do(t, "GET", "/v1/orders", `{"customerId":"nobody"}`), 400)
	got := expect(t, e.do(t, "GET", o, "", "X-Min-Position", c.str("position")), 200)
	if got.str("order", "lines", "0", "sku") != "BOOK-1" {
		t.Fatalf("the line is gone after a refused DELETE: %.300s", got.raw)
	}
	expect(t, e.do(t, "DELETE", o+"/items/BOOK-1?expectedRevision=1", "", "Idempotency-Key", key()), 200)
}

// An export that selects nothing (an unknown order, a type not in the
// log, the position after the head: the incremental export's "nothing new")
// answers 200 and NDJSON, an empty stream, as every stream does; it had no
// Content-Type at all.
func TestRESTEmptyExportIsNDJSON(t *testing.T) {
	e := start(t)
	expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200)
	for _, q := range []string{"?orderIds=nobody", "?eventTypes=OrderShipped", "?fromPosition=2"} {
		r := expect(t, e.do(t, "GET", "/v1/events"+q, ""), 200)
		if ct := r.header.Get("Content-Type"); ct != "application/x-ndjson" || r.raw != "" {
			t.Errorf("GET /v1/events%s: Content-Type %q, body %q; want application/x-ndjson and nothing", q, ct, r.raw)
		}
	}
	// Refused before it started, a stream keeps its error's form.
	r := expect(t, e.do(t, "GET", "/v1/events?orderIds=a*b", ""), 400)
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("a refused export: Content-Type %q, want application/json", ct)
	}
}

// Every newline-delimited JSON stream tells caches not to keep it
// (Cache-Control: no-store), as the Server-Sent Events ones now do (they
// said no-cache, which lets a cache keep a copy): a followed export, a watch without Accept: text/event-stream
// and an export that selects nothing sent no Cache-Control. A stream
// refused before it started is one answer, not a stream: it kept
// X-Accel-Buffering: no.
func TestNDJSONStreamHeaders(t *testing.T) {
	e := start(t)
	expect(t, e.do(t, "POST", "/v1/orders", newOrder, "Idempotency-Key", key()), 200)
	for _, path := range []string{"/v1/events?follow=true", "/v1/orders:watch", "/v1/orders:watch (SSE)"} {
		p, sse := strings.CutSuffix(path, " (SSE)")
		req, err := http.NewRequestWithContext(t.Context(), "GET", e.base+p, nil)
		if err != nil {
			t.Fatal(err)
		}
		if sse {
			req.Header.Set("Accept", "text/event-stream")
		}
		res, err := e.http.Do(req) // returns once the stream started
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		if res.StatusCode != http.StatusOK || res.Header.Get("Cache-Control") != "no-store" || res.Header.Get("X-Accel-Buffering") != "no" {
			t.Errorf("GET %s: HTTP %d, Cache-Control %q, X-Accel-Buffering %q; want 200, no-store, no", path, res.StatusCode,
				res.Header.Get("Cache-Control"), res.Header.Get("X-Accel-Buffering"))
		}
	}
	if r := expect(t, e.do(t, "GET", "/v1/events?orderIds=nobody", ""), 200); r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("an empty export: Cache-Control %q, want no-store", r.header.Get("Cache-Control"))
	}
	if r := expect(t, e.do(t, "GET", "/v1/events?orderIds=a*b", ""), 400); r.header.Values("X-Accel-Buffering") != nil {
		t.Errorf("a refused export: X-Accel-Buffering %q, want none", r.header.Values("X-Accel-Buffering"))
	}
}
