package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/rawbench"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// pool remembers orders the run created: drafts can take items or be
// placed; any can be read.
type pool struct {
	mu     sync.Mutex
	drafts []string
	all    []string
	seq    atomic.Int64
	run    string
}

func newPool() *pool { return &pool{run: strconv.FormatInt(time.Now().UnixNano(), 36)} }

func (p *pool) id() string { return fmt.Sprintf("%s-%d", p.run, p.seq.Add(1)) }

func (p *pool) add(id string) {
	p.mu.Lock()
	p.drafts = append(p.drafts, id)
	p.all = append(p.all, id)
	if len(p.drafts) > 10000 {
		p.drafts = p.drafts[len(p.drafts)-10000:]
	}
	if len(p.all) > 100000 {
		p.all = p.all[len(p.all)-100000:]
	}
	p.mu.Unlock()
}

func (p *pool) draft(r *rand.Rand, take bool) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.drafts) == 0 {
		return "", false
	}
	i := r.IntN(len(p.drafts))
	id := p.drafts[i]
	if take {
		p.drafts[i] = p.drafts[len(p.drafts)-1]
		p.drafts = p.drafts[:len(p.drafts)-1]
	}
	return id, true
}

func (p *pool) any(r *rand.Rand) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.all) == 0 {
		return "", false
	}
	return p.all[r.IntN(len(p.all))], true
}

// GRPC targets ordersd's gRPC API.
type GRPC struct {
	conn *grpc.ClientConn
	cmd  ordersv1.OrderCommandServiceClient
	q    ordersv1.OrderQueryServiceClient
	p    *pool
}

// Auth is what a secured ordersd asks of its clients. The zero value is a
// plaintext connection without a token.
type Auth struct {
	// Token is sent as "Authorization: Bearer <token>" on every call.
	Token string
	// TLS, when set, is used for the connection (server verification and
	// an optional client certificate for mTLS).
	TLS *tls.Config
}

func (a Auth) grpcOptions() []grpc.DialOption {
	creds := insecure.NewCredentials()
	if a.TLS != nil {
		creds = credentials.NewTLS(a.TLS)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if a.Token != "" {
		bearer := "Bearer " + a.Token
		opts = append(opts, grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, o ...grpc.CallOption) error {
			return invoker(metadata.AppendToOutgoingContext(ctx, "authorization", bearer), method, req, reply, cc, o...)
		}))
	}
	return opts
}

// NewGRPC connects to addr with a.
func NewGRPC(addr string, a Auth) (*GRPC, error) {
	conn, err := grpc.NewClient(addr, a.grpcOptions()...)
	if err != nil {
		return nil, err
	}
	return &GRPC{conn: conn, cmd: ordersv1.NewOrderCommandServiceClient(conn), q: ordersv1.NewOrderQueryServiceClient(conn), p: newPool()}, nil
}

// Close closes the connection.
func (g *GRPC) Close() error { return g.conn.Close() }

func class(err error) string {
	if err == nil {
		return ""
	}
	return status.Code(err).String()
}

var benchAddress = &ordersv1.Address{Line1: "1 Bench Way", City: "Loadville", Country: "NL"}

// Do performs op through gRPC.
func (g *GRPC) Do(ctx context.Context, op Op, r *rand.Rand) string {
	rid := g.p.id()
	switch op {
	case Add:
		if id, ok := g.p.draft(r, false); ok {
			_, err := g.cmd.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid, OrderId: id, Sku: "SKU-" + rid, Quantity: 1, UnitPrice: 250})
			return class(err)
		}
	case Place:
		if id, ok := g.p.draft(r, true); ok {
			_, err := g.cmd.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: rid, OrderId: id})
			return class(err)
		}
	case Get:
		if id, ok := g.p.any(r); ok {
			_, err := g.q.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: id})
			return class(err)
		}
	case List:
		_, err := g.q.ListOrders(ctx, &ordersv1.ListOrdersRequest{CustomerId: "bench", PageSize: listPage})
		return class(err)
	}
	c, err := g.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid, CustomerId: "bench", Currency: "EUR",
		Lines: []*ordersv1.LineItem{{Sku: "BASE", Quantity: 1, UnitPrice: 999}}, ShippingAddress: benchAddress})
	if err == nil {
		g.p.add(c.GetOrder().GetOrderId())
	}
	return class(err)
}

// REST targets ordersd's REST gateway.
type REST struct {
	base  string
	token string
	c     *http.Client
	p     *pool
}

// NewREST targets the gateway at base, e.g. "http://127.0.0.1:8080" (or
// https with a.TLS).
func NewREST(base string, a Auth) *REST {
	return &REST{base: base, token: a.Token, p: newPool(), c: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, TLSClientConfig: a.TLS}}}
}

// Close releases idle connections.
func (h *REST) Close() error { h.c.CloseIdleConnections(); return nil }

func (h *REST) call(ctx context.Context, method, path string, body any, out any) string {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.base+path, rd)
	if err != nil {
		return "request"
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	res, err := h.c.Do(req)
	if err != nil {
		return "transport"
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, res.Body)
		return "HTTP " + strconv.Itoa(res.StatusCode)
	}
	if out != nil {
		if err := json.NewDecoder(res.Body).Decode(out); err != nil {
			return "decode"
		}
	} else {
		_, _ = io.Copy(io.Discard, res.Body)
	}
	return ""
}

// Do performs op through REST.
func (h *REST) Do(ctx context.Context, op Op, r *rand.Rand) string {
	rid := h.p.id()
	switch op {
	case Add:
		if id, ok := h.p.draft(r, false); ok {
			return h.call(ctx, "POST", "/v1/orders/"+id+"/items", map[string]any{"requestId": rid, "sku": "SKU-" + rid, "quantity": "1", "unitPrice": "250"}, nil)
		}
	case Place:
		if id, ok := h.p.draft(r, true); ok {
			return h.call(ctx, "POST", "/v1/orders/"+id+":place", map[string]any{"requestId": rid}, nil)
		}
	case Get:
		if id, ok := h.p.any(r); ok {
			return h.call(ctx, "GET", "/v1/orders/"+id, nil, nil)
		}
	case List:
		return h.call(ctx, "GET", "/v1/orders?customerId=bench&pageSize="+strconv.Itoa(listPage), nil, nil)
	}
	var out struct {
		Order struct {
			OrderID string `json:"orderId"`
		} `json:"order"`
	}
	c := h.call(ctx, "POST", "/v1/orders", map[string]any{"requestId": rid, "customerId": "bench", "currency": "EUR",
		"lines":           []any{map[string]any{"sku": "BASE", "quantity": "1", "unitPrice": "999"}},
		"shippingAddress": map[string]any{"line1": "1 Bench Way", "city": "Loadville", "country": "NL"}}, &out)
	if c == "" {
		h.p.add(out.Order.OrderID)
	}
	return c
}

// Raw does the equivalent bare JetStream operations (eventstore/rawbench),
// on a stream of their own beside ORDERS: publish with an expected last subject sequence for writes, direct get of
// the last message for reads.
type Raw struct {
	w *rawbench.Stream
	p *pool
}

// listPage is the page size of the list operation, in every target.
const listPage = 20

// NewRaw connects to url and creates (or reuses) the raw stream, configured
// like ORDERS.
func NewRaw(ctx context.Context, url string) (*Raw, error) {
	w, err := rawbench.Open(ctx, url)
	if err != nil {
		return nil, err
	}
	return &Raw{w: w, p: newPool()}, nil
}

// Close deletes the raw stream and closes the connection.
func (w *Raw) Close() error { return w.w.Close() }

// publish appends to id; after a lost race it reloads the subject's last
// sequence and tries again, which is what the command side does on a
// conflict.
func (w *Raw) publish(ctx context.Context, id, rid string) string {
	if err := w.w.Append(ctx, id, rid); err != nil {
		return "publish"
	}
	return ""
}

// Do performs op on bare JetStream.
func (w *Raw) Do(ctx context.Context, op Op, r *rand.Rand) string {
	rid := w.p.id()
	switch op {
	case Add, Place:
		if id, ok := w.p.draft(r, op == Place); ok {
			return w.publish(ctx, id, rid)
		}
	case Get:
		if id, ok := w.p.any(r); ok {
			if _, err := w.w.Last(ctx, id); err != nil {
				return "get"
			}
			return ""
		}
	case List:
		// A page of 20, as the system's list asks of its read model: one
		// batched direct get of the newest messages.
		switch n, err := w.w.Newest(ctx, listPage); {
		case err != nil:
			return "list"
		case n > 0:
			return ""
		}
	}
	c := w.publish(ctx, rid, rid)
	if c == "" {
		w.p.add(rid)
	}
	return c
}
