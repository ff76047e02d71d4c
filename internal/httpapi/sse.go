package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// DefaultHeartbeat is how often an idle Server-Sent Events stream gets a
// comment line unless WithHeartbeat says otherwise: often enough that
// proxies with a one-minute idle timeout keep the connection.
const DefaultHeartbeat = 15 * time.Second

// WithHeartbeat sets how often an idle Server-Sent Events stream gets a
// heartbeat comment (default DefaultHeartbeat). Invalid: d <= 0.
func WithHeartbeat(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: WithHeartbeat(%v): must be positive", ErrInvalidOption, d)
		}
		c.heartbeat = d
		return nil
	}
}

// Watch routes, as http.yaml maps them.
const (
	watchPrefix = "/v1/orders/"
	watchVerb   = ":watch"
	watchList   = "/v1/orders:watch"
	// watchOrderRoute is one order's watch route as RouteTemplate
	// spells it.
	watchOrderRoute = "/v1/orders/{order_id}:watch"
)

// wantsEventStream reports whether the request asks for Server-Sent
// Events: Accept names text/event-stream with a weight (q) above 0 and no
// lower than newline-delimited JSON's, if it names that too. A weight of
// 0 refuses the type (RFC 9110, section 12.4.2), as does one that is no
// number from 0 to 1.
func wantsEventStream(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	sse, nd := -1.0, -1.0 // -1: not named
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			q := 1.0
			if w, ok := params["q"]; ok {
				if q, err = strconv.ParseFloat(w, 64); err != nil || q < 0 || q > 1 {
					q = 0
				}
			}
			switch mt {
			case "text/event-stream":
				sse = max(sse, q)
			case ndjson:
				nd = max(nd, q)
			}
		}
	}
	return sse > 0 && sse >= nd
}

// sseWatch serves the watch routes as Server-Sent Events when the client
// asks for text/event-stream, and hands every other request to next (where
// the watch routes answer newline-delimited JSON like other streams). It
// runs behind conventions, so its requests pass the same checks (headers,
// URL, an empty body on GET) as the gateway's.
type sseWatch struct {
	query     ordersv1.OrderQueryServiceClient
	heartbeat time.Duration
	errs      errorHandlers
	// mux is the gateway's, whose header matcher decides what is
	// forwarded as metadata.
	mux  *runtime.ServeMux
	next http.Handler
}

func (s sseWatch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Matched on the path as sent, as grpc-gateway now matches its routes:
	// an order id holding '/' arrives as %2F, within its one segment.
	p := routePath(r)
	watch := isWatchPath(p)
	if watch {
		// Accept chooses between two answers of one route: a cache
		// must not hand one to a client that asked for the other.
		w.Header().Add("Vary", "Accept")
	}
	if !wantsEventStream(r) {
		s.next.ServeHTTP(w, r)
		return
	}
	switch {
	case !watch:
		s.next.ServeHTTP(w, r)
	case p == watchList:
		// Served beside grpc-gateway's mux, so labelled here as its
		// routes are (routeTelemetry).
		labelRoute(r, watchList)
		s.serve(w, r, &ordersv1.WatchOrdersRequest{}, ordersv1.OrderQueryService_WatchOrders_FullMethodName, watchOrdersPath, func(ctx context.Context, m proto.Message) (recv, error) {
			st, err := s.query.WatchOrders(ctx, m.(*ordersv1.WatchOrdersRequest))
			return recvOf(st), err
		})
	default:
		id := p[len(watchPrefix) : len(p)-len(watchVerb)]
		if r.URL.RawPath != "" {
			// The path as sent (routePath), its escapes still in it;
			// else it is the decoded path, whose '%' are the id's own.
			var err error
			if id, err = url.PathUnescape(id); err != nil {
				s.next.ServeHTTP(w, r) // the gateway answers a malformed path
				return
			}
		}
		labelRoute(r, watchOrderRoute) // refused below or not, as the gateway labels
		if err := queryAgrees(r, map[string]string{"order_id": id}); err != nil {
			writeStatus(w, r, http.StatusBadRequest, err)
			return
		}
		req := &ordersv1.WatchOrderRequest{OrderId: id}
		s.serve(w, r, req, ordersv1.OrderQueryService_WatchOrder_FullMethodName, watchOrderPath, func(ctx context.Context, m proto.Message) (recv, error) {
			st, err := s.query.WatchOrder(ctx, m.(*ordersv1.WatchOrderRequest))
			return recvOf(st), err
		})
	}
}

// WatchRoute reports whether r is to one of the watch routes
// (GET /v1/orders/{order_id}:watch and GET /v1/orders:watch).
func WatchRoute(r *http.Request) bool { return isWatchPath(routePath(r)) }

// isWatchPath reports whether p (as routePath gives it) is a watch route's.
func isWatchPath(p string) bool {
	return p == watchList || strings.HasPrefix(p, watchPrefix) && strings.HasSuffix(p, watchVerb) &&
		len(p) > len(watchPrefix)+len(watchVerb) && !strings.Contains(p[len(watchPrefix):], "/")
}

// The fields each watch route takes from its path, which no query
// parameter may overwrite: the filters grpc-gateway's generated handlers
// pass for the same routes. /v1/orders/A:watch?orderId=B is refused
// (queryAgrees) whether it asks for Server-Sent Events or
// newline-delimited JSON.
var (
	watchOrderPath  = utilities.NewDoubleArray([][]string{{"order_id"}})
	watchOrdersPath = utilities.NewDoubleArray(nil)
)

// recv is one watch stream, whatever its message type.
type recv struct {
	header func() (metadata.MD, error)
	next   func() (proto.Message, error)
}

func recvOf[M any, P interface {
	*M
	proto.Message
}](st grpc.ServerStreamingClient[M]) recv {
	if st == nil {
		return recv{}
	}
	return recv{header: st.Header, next: func() (proto.Message, error) {
		m, err := st.Recv()
		if err != nil {
			return nil, err
		}
		return P(m), nil
	}}
}

var sseJSON = protojson.MarshalOptions{EmitUnpopulated: true}

// fromPositioned is both watch requests.
type fromPositioned interface {
	proto.Message
	GetFromPosition() uint64
}

// serve fills req from the query parameters (but for its path fields) and
// headers, opens the watch and relays it: each message as an event whose id
// is its position (what EventSource sends back as Last-Event-ID when it
// reconnects), a heartbeat comment while idle, and a last "error" event
// when the stream fails. An error before the stream starts answers its
// HTTP status and status JSON.
func (s sseWatch) serve(w http.ResponseWriter, r *http.Request, req fromPositioned, rpc string, pathFields *utilities.DoubleArray, open func(context.Context, proto.Message) (recv, error)) {
	// As the NDJSON streams (startStream): a watch carries personal
	// data, and a refusal (a 404, which a cache may keep unbidden) holds
	// no longer than the moment it is answered.
	w.Header().Set("Cache-Control", "no-store")
	if err := fillWatchRequest(r, req, pathFields); err != nil {
		writeStatus(w, r, http.StatusBadRequest, err)
		return
	}
	// done ends the reading goroutine once this handler returns.
	done, cancel := context.WithCancel(r.Context())
	defer cancel()
	// As grpc-gateway's own handlers do: the forwarded headers become
	// metadata (a value gRPC metadata cannot carry is dropped, not fatal)
	// and Grpc-Timeout the call's deadline (malformed: 400).
	ctx, err := runtime.AnnotateContext(done, s.mux, r, rpc)
	if err != nil {
		writeStatus(w, r, http.StatusBadRequest, err)
		return
	}
	st, err := openWatch(ctx, req, open)
	if err != nil {
		// A watch a front end ended with a status (a shutdown: retry)
		// before it started answers that status, as the gateway's
		// streams do: an EventSource does not reconnect after an answer
		// other than 200, and "context canceled" would read as the
		// client's own leaving.
		cs, ended := endedWith(r.Context())
		if !ended {
			cs = s.errs.clientStatus(ctx, r, err)
		}
		writeStatus(w, r, HTTPStatus(cs.Code(), false), cs.Err())
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	// Read until done, not ctx: the stream's failure at ctx's deadline
	// must still reach relay, to be told as the last event.
	s.relay(ctx, w, rc, r, receive(done, st))
}

// fillWatchRequest fills req from r's query parameters, the request
// conventions (which conventions put in r's context) and Last-Event-ID;
// its errors answer 400. pathFields are the
// fields req already holds from the path: query parameters naming them
// (with the path's value; another is refused before) are ignored.
func fillWatchRequest(r *http.Request, req fromPositioned, pathFields *utilities.DoubleArray) error {
	conv := conventionsFrom(r.Context()) // sseWatch runs behind conventions only, which parsed the query strictly
	if err := runtime.PopulateQueryParameters(req, conv.query, pathFields); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return conv.apply(req.ProtoReflect())
}

// openWatch opens the watch and waits for its headers, so that a watch the
// server refuses is answered with its status rather than an empty stream.
func openWatch(ctx context.Context, req proto.Message, open func(context.Context, proto.Message) (recv, error)) (recv, error) {
	st, err := open(ctx, req)
	var md metadata.MD
	if err == nil {
		md, err = st.header()
	}
	if err == nil && md == nil {
		// Ended without headers (trailers only, so without a message):
		// the status comes with the first read, io.EOF for a watch that
		// ended well, which then reads as an empty stream (200, as the
		// gateway answers it): a finished stream reads io.EOF again.
		if _, err = st.next(); errors.Is(err, io.EOF) {
			err = nil
		}
	}
	return st, err
}

// received is one read of a watch stream.
type received struct {
	m   proto.Message
	err error
}

// receive reads st until it fails (io.EOF included) or ctx ends, so that
// relay can wait for a message and the heartbeat at once.
func receive(ctx context.Context, st recv) <-chan received {
	items := make(chan received)
	go func() {
		for {
			m, err := st.next()
			select {
			case items <- received{m, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return items
}

// writeErrorEvent writes st as a stream's last event.
func writeErrorEvent(w http.ResponseWriter, rc *http.ResponseController, st *status.Status) {
	b, _ := statusJSON.Marshal(st.Proto())
	_, _ = fmt.Fprintf(w, "event: error\ndata: %s\n\n", b)
	_ = rc.Flush()
}

// relay writes each message as an event, a heartbeat comment while idle,
// and the stream's failure as a last "error" event, until the stream ends
// or the client goes away.
func (s sseWatch) relay(ctx context.Context, w http.ResponseWriter, rc *http.ResponseController, r *http.Request, items <-chan received) {
	beat := time.NewTicker(s.heartbeat)
	defer beat.Stop()
	for {
		var out string
		select {
		case <-r.Context().Done():
			if st, ok := endedWith(r.Context()); ok {
				writeErrorEvent(w, rc, st)
			}
			return
		case <-beat.C:
			out = ": heartbeat\n\n"
		case it := <-items:
			if errors.Is(it.err, io.EOF) {
				return
			}
			if it.err != nil {
				st, ok := endedWith(r.Context())
				if !ok {
					st = s.errs.clientStatus(ctx, r, it.err)
				}
				writeErrorEvent(w, rc, st)
				return
			}
			b, err := sseJSON.Marshal(it.m)
			if err != nil {
				s.errs.logged(ctx, r, status.New(codes.Internal, err.Error()))
				return
			}
			pos := it.m.(interface{ GetPosition() uint64 }).GetPosition()
			out = fmt.Sprintf("id: %d\ndata: %s\n\n", pos, b)
		}
		if _, err := io.WriteString(w, out); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
