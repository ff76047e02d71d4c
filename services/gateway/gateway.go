// Package gateway serves the REST/JSON API: grpc-gateway translating HTTP
// into calls on ordersd's own gRPC server over a real connection, so every
// interceptor (logging, tracing, later authentication) applies to REST
// exactly as to gRPC.
//
// JSON is the proto3 JSON mapping: lowerCamel field names, enums as strings,
// int64 as strings, every field present. Server-streaming RPCs answer with
// newline-delimited JSON, one {"result": …} object per message.
//
// HTTP conventions on top of the mapping:
//   - Idempotency-Key fills request_id when the body (or, for DELETE, the
//     query) has none.
//   - If-Match: "<revision>" fills expected_revision; a stale one answers
//     412 Precondition Failed instead of 409.
//   - GET of an order, and every command, answer ETag: "<revision>".
//   - X-Min-Position asks a query for read-your-writes (as does the
//     consistency.min_position query parameter).
//   - Bodies are capped (1 MiB by default): 413. A body that is not JSON by
//     Content-Type: 415. Unknown fields, malformed JSON and wrong types: 400
//     naming the problem.
//
// Errors are grpc-gateway's status JSON ({"code", "message", "details"})
// with the mapped HTTP status: 400, 404, 409, 412, 413, 415, 501, 503; an
// internal error carries only the server's generic message.
package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/orderstream/orderstream/api/openapi"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// DefaultBodyLimit caps request bodies.
const DefaultBodyLimit = 1 << 20

// Option configures the gateway.
type Option func(*config)

type config struct {
	bodyLimit int64
	log       *slog.Logger
	conns     map[string]*grpc.ClientConn
}

// WithServiceConn routes one service (by full name, e.g.
// "orders.v1.OrderQueryService") over its own connection, for services
// that run in other processes; the others use New's connection.
func WithServiceConn(service string, conn *grpc.ClientConn) Option {
	return func(c *config) {
		if conn != nil {
			c.conns[service] = conn
		}
	}
}

// WithBodyLimit sets the request body cap in bytes.
func WithBodyLimit(n int64) Option { return func(c *config) { c.bodyLimit = n } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// forwarded are the HTTP headers passed to gRPC as metadata of the same
// (lower-case) name.
var forwarded = map[string]bool{
	"authorization": true, "x-actor": true, "x-correlation-id": true, "x-causation-id": true, "idempotency-key": true,
}

type ctxKey int

const ifMatchKey ctxKey = 0

// New returns the REST handler for /v1/... and /openapi.json, calling the
// services over conn.
func New(ctx context.Context, conn *grpc.ClientConn, opts ...Option) (http.Handler, error) {
	cfg := config{bodyLimit: DefaultBodyLimit, log: slog.Default(), conns: map[string]*grpc.ClientConn{}}
	for _, o := range opts {
		o(&cfg)
	}
	marshaler := &runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{EmitUnpopulated: true},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}
	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, marshaler),
		runtime.WithIncomingHeaderMatcher(func(key string) (string, bool) {
			k := strings.ToLower(key)
			if forwarded[k] {
				return k, true
			}
			return runtime.DefaultHeaderMatcher(key)
		}),
		runtime.WithOutgoingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithErrorHandler(errorHandler),
		runtime.WithForwardResponseOption(setETag),
	)
	for _, svc := range []struct {
		name string
		reg  func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error
	}{
		{ordersv1.OrderCommandService_ServiceDesc.ServiceName, ordersv1.RegisterOrderCommandServiceHandler},
		{ordersv1.OrderQueryService_ServiceDesc.ServiceName, ordersv1.RegisterOrderQueryServiceHandler},
		{ordersv1.OrderAdminService_ServiceDesc.ServiceName, ordersv1.RegisterOrderAdminServiceHandler},
		{ordersv1.OrderAuditService_ServiceDesc.ServiceName, ordersv1.RegisterOrderAuditServiceHandler},
		{ordersv1.PaymentAdminService_ServiceDesc.ServiceName, ordersv1.RegisterPaymentAdminServiceHandler},
	} {
		c := conn
		if sc, ok := cfg.conns[svc.name]; ok {
			c = sc
		}
		if err := svc.reg(ctx, mux, c); err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
	}
	h := http.NewServeMux()
	h.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openapi.Spec)
	})
	h.Handle("/v1/", conventions(cfg, mux))
	return h, nil
}

// setETag exposes the order's revision for optimistic concurrency over HTTP.
func setETag(_ context.Context, w http.ResponseWriter, m proto.Message) error {
	if o, ok := m.(interface{ GetOrder() *ordersv1.Order }); ok && o.GetOrder() != nil && o.GetOrder().GetRevision() > 0 {
		w.Header().Set("ETag", strconv.Quote(strconv.FormatUint(o.GetOrder().GetRevision(), 10)))
	}
	return nil
}

// errorHandler is grpc-gateway's, except that a stale revision named by
// If-Match is 412, as HTTP defines it.
func errorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if status.Code(err) == codes.Aborted && r.Context().Value(ifMatchKey) != nil {
		w = statusOverride{ResponseWriter: w, code: http.StatusPreconditionFailed}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

type statusOverride struct {
	http.ResponseWriter
	code int
}

func (s statusOverride) WriteHeader(int) { s.ResponseWriter.WriteHeader(s.code) }

// writeError answers in grpc-gateway's status JSON for errors found before
// a request reaches the mux.
func writeError(w http.ResponseWriter, httpCode int, code codes.Code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpCode)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": int(code), "message": msg, "details": []any{}})
}

var etagRe = regexp.MustCompile(`^(?:W/)?"(\d{1,20})"$`)

// conventions applies the HTTP conventions of the package comment before the
// request reaches grpc-gateway.
func conventions(cfg config, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var revision string
		if im := r.Header.Get("If-Match"); im != "" {
			m := etagRe.FindStringSubmatch(strings.TrimSpace(im))
			if m == nil {
				writeError(w, http.StatusBadRequest, codes.InvalidArgument, `If-Match: want a quoted revision such as "42"`)
				return
			}
			revision = m[1]
			r = r.WithContext(context.WithValue(r.Context(), ifMatchKey, revision))
		}
		idem := r.Header.Get("Idempotency-Key")
		if mp := r.Header.Get("X-Min-Position"); mp != "" && r.Method == http.MethodGet {
			if _, err := strconv.ParseUint(mp, 10, 64); err != nil {
				writeError(w, http.StatusBadRequest, codes.InvalidArgument, "X-Min-Position: want a log position")
				return
			}
			q := r.URL.Query()
			if q.Get("consistency.minPosition") == "" && q.Get("consistency.min_position") == "" {
				q.Set("consistency.minPosition", mp)
				r.URL.RawQuery = q.Encode()
			}
		}
		switch r.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch:
			body, ok := readBody(cfg, w, r)
			if !ok {
				return
			}
			if len(bytes.TrimSpace(body)) > 0 || idem != "" || revision != "" {
				var err error
				if body, err = fillBody(body, idem, revision); err != nil {
					writeError(w, http.StatusBadRequest, codes.InvalidArgument, err.Error())
					return
				}
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		case http.MethodDelete:
			q := r.URL.Query()
			if idem != "" && q.Get("requestId") == "" && q.Get("request_id") == "" {
				q.Set("requestId", idem)
			}
			if revision != "" && q.Get("expectedRevision") == "" && q.Get("expected_revision") == "" {
				q.Set("expectedRevision", revision)
			}
			r.URL.RawQuery = q.Encode()
		}
		next.ServeHTTP(w, r)
	})
}

// readBody enforces the content type and the size cap.
func readBody(cfg config, w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			writeError(w, http.StatusUnsupportedMediaType, codes.InvalidArgument, "Content-Type must be application/json")
			return nil, false
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, cfg.bodyLimit))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeError(w, http.StatusRequestEntityTooLarge, codes.ResourceExhausted, fmt.Sprintf("request body exceeds %d bytes", cfg.bodyLimit))
		return nil, false
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, codes.InvalidArgument, "could not read request body")
		return nil, false
	}
	if len(body) > 0 && r.Header.Get("Content-Type") == "" {
		writeError(w, http.StatusUnsupportedMediaType, codes.InvalidArgument, "Content-Type must be application/json")
		return nil, false
	}
	return body, true
}

// fillBody sets requestId and expectedRevision in a JSON object body unless
// it already has them.
func fillBody(body []byte, idem, revision string) ([]byte, error) {
	if idem == "" && revision == "" {
		return body, nil
	}
	obj := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(body)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&obj); err != nil {
			return nil, fmt.Errorf("request body is not a JSON object: %v", err)
		}
	}
	has := func(a, b string) bool { _, x := obj[a]; _, y := obj[b]; return x || y }
	if idem != "" && !has("requestId", "request_id") {
		v, _ := json.Marshal(idem)
		obj["requestId"] = v
	}
	if revision != "" && !has("expectedRevision", "expected_revision") {
		obj["expectedRevision"] = json.RawMessage(strconv.Quote(revision))
	}
	return json.Marshal(obj)
}
