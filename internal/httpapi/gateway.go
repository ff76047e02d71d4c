// Package httpapi serves the REST/JSON API of ordersd: grpc-gateway
// translating HTTP into calls on the gRPC services over a real client
// connection (in ordersd, to its own loopback listener), so every server
// interceptor — logging, tracing, metrics, later authentication — applies to
// REST exactly as to gRPC. Routes come from api/orders/v1/http.yaml; every
// service in the contract is registered, and one the gRPC server does not
// run answers 501.
//
// # JSON
//
// Bodies and answers use the proto3 JSON mapping: lowerCamel field names
// (either spelling is accepted on input), enums as their names, int64 and
// uint64 as strings (numbers are accepted on input), Timestamps as RFC 3339,
// Durations as "1.5s". Answers carry every field, zero values included
// (EmitUnpopulated), so a client sees "total":"0" and "lines":[] rather than
// guessing what a missing key means; optional fields and unset oneofs stay
// absent, because for them absence carries meaning.
//
// Server-streaming RPCs (StreamEvents, VerifyLog, RebuildReadModel, the watches) answer
// 200 with Content-Type application/x-ndjson and Cache-Control: no-store
// (see startStream): one JSON object per line,
// {"result":{…}} per message, each flushed as it is produced. The status
// line and headers go as soon as the service has started the stream (sent
// its headers), not with the first message, which a watch resumed from a
// position or a followed export of a quiet log may not send for long. An
// error after that arrives as a last line {"error":{"code":…,"message":…,
// "details":[…]}}. An error before it (a bad filter, say) answers the mapped
// HTTP status with Content-Type application/json and that same single
// {"error":{…}} line, so a stream client reads one line format either way.
//
// The watch routes (GET /v1/orders/{order_id}:watch and GET
// /v1/orders:watch) answer Server-Sent Events when the request accepts
// text/event-stream: one event per message, whose id is the message's log
// position and whose data is its JSON; a ": heartbeat" comment while idle
// (WithHeartbeat, DefaultHeartbeat); and, when the stream fails after it
// started, a last "error" event whose data is the status JSON. An error
// before the stream starts answers its HTTP status and status JSON, as any
// route does. Without that Accept they answer newline-delimited JSON like
// the other streams. Either way the Last-Event-ID header (sent by a
// reconnecting EventSource) fills from_position, with the request
// conventions below. Either way the path's
// order_id wins over an orderId query parameter, as on every route.
//
// A stream whose request context a front end cancels with a gRPC status
// as its cause (context.WithCancelCause; ordersd does so at shutdown, with
// UNAVAILABLE) ends with that status, as its last line or "error" event,
// rather than as one whose client went away.
//
// # HTTP conventions
//
//   - Idempotency-Key fills request_id of a request message that has one
//     (the commands) when the body (for DELETE, which has none, the query)
//     leaves it empty. A retry with the same key returns the original answer
//     and appends nothing. A body whose requestId differs from the header is
//     400.
//   - If-Match: "<revision>" fills expected_revision of a request that has
//     one; a stale revision then answers 412 Precondition Failed (without
//     If-Match, a stale expectedRevision in the body answers 409). If-Match: *
//     is accepted and adds nothing. A weak ETag never matches (strong
//     comparison): 412, below. Several ETags, or one that is not a
//     revision, are 400, as is a body expectedRevision that disagrees.
//   - GET /v1/orders/{id} and every command answer ETag: "<revision>"
//     ("<revision>-erased" once the order's personal data was erased, which
//     changes the answer but not the revision; If-Match takes either). A
//     GET (or HEAD) of an order whose If-None-Match names it (weak
//     comparison, or *) is 304 without a body, and one whose If-Match names
//     another tag (strong comparison: "3" is not "3-erased") is 412. If-None-Match on a command is 412 when it
//     is "*" (what a command acts on exists; a create passes) and 400
//     otherwise (see conditional). A command's 412 for a weak If-Match or
//     If-None-Match: * comes only where the request would otherwise go
//     through (RFC 9110, section 13.2.1): a path no route serves is 404, a
//     method the route does not take 405, a bad body 400, and, with
//     WithAdmission, a missing token 401 and a token without the role 403.
//     An order's command carries the condition as an expected revision no
//     order reaches, so its service answers first: 404 for an order that
//     does not exist, 400, 401, 403 as it judges them.
//   - X-Min-Position: <position> asks a query for read-your-writes, like the
//     consistency.minPosition query parameter (the larger one wins). A read
//     model that does not get there in time answers 503.
//   - Bodies are capped (WithBodyLimit, 1 MiB by default): 413; a body not
//     received in time (WithBodyTimeout, 30 s by default): 408. A body
//     whose Content-Type is missing or not JSON (application/json or
//     application/*+json, UTF-8): 415. Malformed JSON, a wrong type, an
//     unknown field (named in the message), an unknown enum name, or
//     anything but whitespace after the JSON value ({…} {"x":1}): 400. So
//     is a query parameter that names no field of the request: grpc-gateway
//     alone would ignore it, and a misspelt filter would match everything.
//     POST, PUT and PATCH take their fields from the JSON body only (their
//     rules map the whole body), so any query parameter on them is 400
//     rather than silently ignored (?expectedRevision=… would otherwise
//     skip the concurrency check).
//   - A path, or a query parameter name or value, that is not valid UTF-8
//     once percent-decoded (/v1/orders/%FF) is 400: proto strings are UTF-8.
//   - Routes are matched on the path as sent and each path parameter is
//     then percent-decoded whole, as google.api.http asks of single-segment
//     variables: an order id or SKU holding '/' is sent as %2F
//     (/v1/orders/a%2Fb/items/c%2Fd), one holding ':' as it is or as %3A
//     (/v1/orders/a:b:place). A verb's own ':' must be sent as it is: an
//     encoded one (%3Aplace) is part of the id.
//   - Authorization, traceparent, tracestate, X-Actor, X-Correlation-Id,
//     X-Causation-Id and Idempotency-Key are forwarded as gRPC metadata of
//     the same lower-case name; no other header is (apart from grpc-gateway's
//     x-forwarded-* annotations). Together they may make at most 16 KiB of
//     gRPC metadata (each value counted with its name and 32 bytes, as
//     gRPC counts it): more is 431. A value gRPC metadata
//     cannot carry (anything but printable ASCII) is dropped rather than
//     failing the call, on every route, Server-Sent Events included. No
//     gRPC metadata is copied back into HTTP headers. grpc-gateway's
//     Grpc-Timeout header (e.g. "500m") sets the call's deadline, on every
//     route, Server-Sent Events included: 504 when it passes, or a last
//     error (DEADLINE_EXCEEDED) on a stream that has started; a malformed
//     one is 400.
//
// # Errors
//
// Every error, including those found before a request reaches gRPC, is
// grpc-gateway's status JSON {"code":<gRPC code>,"message":…,"details":[…]}
// with the HTTP status grpc-gateway maps the code to: 400 INVALID_ARGUMENT,
// OUT_OF_RANGE and FAILED_PRECONDITION (an illegal transition; see
// HTTPStatus), 404 NOT_FOUND, 409 ALREADY_EXISTS and ABORTED, 412 ABORTED
// under If-Match, 408, 413 and 415 as above, 429 RESOURCE_EXHAUSTED, 499
// CANCELLED, 501 UNIMPLEMENTED, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED, 500
// otherwise. A 401 (UNAUTHENTICATED) carries the challenge
// WWW-Authenticate: Bearer. Messages of INTERNAL, UNKNOWN and DATA_LOSS
// are replaced by "internal error" (but the audit's DATA_LOSS for a message
// of the log it cannot decode, rpcerr.UnreadableEvent, whose position a
// client resumes an export after), and a connection failure between
// gateway and gRPC server by "service unavailable, retry later", so no
// internal text (addresses, paths, driver errors) reaches a client; the
// original is logged. An
// unknown path is 404 and a known path with the wrong method 405, both in
// the same shape; a 405 names the path's methods in its Allow header.
// HEAD is answered on every route with a GET that is not a stream: the
// GET's status and headers (ETag, Content-Type), without its body.
//
// # Other endpoints
//
// GET /openapi.json serves the OpenAPI 3 document of this API, and GET
// /openapi-v2.json the same API as OpenAPI 2.0 (package api/openapi);
// GET /healthz answers 200 {"status":"ok"} while the process runs; GET /readyz runs the readiness checks (see
// WithReadinessCheck) and answers 200 or 503 naming each check. None of
// them calls gRPC, so none needs a token.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/orderstream/orderstream/api/openapi"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// DefaultBodyLimit is the request body cap in bytes unless WithBodyLimit
// says otherwise. The gRPC server's own receive limit in ordersd is the same.
const DefaultBodyLimit = 1 << 20

// DefaultBodyTimeout bounds reading one request body unless WithBodyTimeout
// says otherwise.
const DefaultBodyTimeout = 30 * time.Second

// Option configures New. An option given a value it does not accept makes
// New fail with an error wrapping ErrInvalidOption; each option says which
// values those are.
type Option func(*config) error

// ErrInvalidOption reports an option of New given a value it does not
// accept.
var ErrInvalidOption = errors.New("httpapi: invalid option")

type config struct {
	bodyLimit    int64
	bodyTimeout  time.Duration
	writeTimeout time.Duration
	log          *slog.Logger
	heartbeat    time.Duration
	checks       []check
	conns        map[string]*grpc.ClientConn
	admit        func(md metadata.MD, method string) error
}

type check struct {
	name string
	fn   func(context.Context) error
}

// WithBodyLimit caps request bodies at n bytes (default DefaultBodyLimit);
// a larger body answers 413. Invalid: n < 1.
func WithBodyLimit(n int64) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("%w: WithBodyLimit(%d): must be at least 1", ErrInvalidOption, n)
		}
		c.bodyLimit = n
		return nil
	}
}

// WithBodyTimeout bounds reading one request body, so a client trickling
// its body cannot hold a handler: past d the answer is 408. The gateway sets
// this read deadline per request, so the HTTP server needs no ReadTimeout
// (which would also cut long-lived streams). The default is
// DefaultBodyTimeout. Invalid: d <= 0.
func WithBodyTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: WithBodyTimeout(%v): must be positive", ErrInvalidOption, d)
		}
		c.bodyTimeout = d
		return nil
	}
}

// DefaultWriteTimeout is how long one write of an answer may wait on a
// client that takes nothing, unless WithWriteTimeout says otherwise.
const DefaultWriteTimeout = 30 * time.Second

// WithWriteTimeout bounds how long one write of an answer may wait on a
// client that takes nothing (its connection open, its receive window
// full): past d the request ends, a stream's call with it, and the
// connection is closed. The gateway sets this write deadline per write, so
// a stream that goes on for hours to a client that reads is never cut, and
// the HTTP server needs no WriteTimeout (which would cut it). The default
// is DefaultWriteTimeout. Invalid: d <= 0.
func WithWriteTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: WithWriteTimeout(%v): must be positive", ErrInvalidOption, d)
		}
		c.writeTimeout = d
		return nil
	}
}

// WithServiceConn routes one service (by full name, e.g.
// "orders.v1.OrderQueryService") over its own connection, for services that
// run in other processes; the others use New's connection. A nil conn
// leaves the service on New's connection, so callers can pass the
// connection of a service that may run in-process. /readyz checks each
// such connection too, as "grpc:<target>". The caller owns conn. Invalid: a
// service the gateway has no routes for.
func WithServiceConn(service string, conn *grpc.ClientConn) Option {
	return func(c *config) error {
		if !slices.ContainsFunc(registrations, func(r registration) bool { return r.service == service }) {
			return fmt.Errorf("%w: WithServiceConn(%q): no HTTP routes for that service", ErrInvalidOption, service)
		}
		if conn != nil {
			c.conns[service] = conn
		}
		return nil
	}
}

// WithLogger sets where the gateway logs what it keeps from clients
// (internal and connection errors). The default is slog.Default(). Invalid:
// nil.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("%w: WithLogger(nil)", ErrInvalidOption)
		}
		c.log = l
		return nil
	}
}

// WithReadinessCheck adds a named check to GET /readyz: fn returns nil when
// ready, or an error whose text is shown under name. Checks run
// concurrently with a one-second deadline on each /readyz request. Besides
// these, /readyz always checks that New's gRPC connection is not failing
// (under the name "grpc"), and so each WithServiceConn connection.
// Invalid: an empty name or a nil fn.
func WithReadinessCheck(name string, fn func(ctx context.Context) error) Option {
	return func(c *config) error {
		if name == "" || fn == nil {
			return fmt.Errorf("%w: WithReadinessCheck(%q): needs a name and a function", ErrInvalidOption, name)
		}
		c.checks = append(c.checks, check{name: name, fn: fn})
		return nil
	}
}

// WithAdmission tells the gateway how the services authorize a call:
// admit returns nil when they would admit a call of method (a full gRPC
// method name) carrying md, and otherwise the status error they would
// answer (UNAUTHENTICATED, PERMISSION_DENIED). A command whose
// precondition fails whatever the order's state (a weak If-Match,
// If-None-Match: *) is not sent, and without admit its 412 would be
// answered to a caller the services refuse, where RFC 9110 wants the 401
// or 403 first. ordersd passes the authenticator its services check
// tokens with. Invalid: nil.
func WithAdmission(admit func(md metadata.MD, method string) error) Option {
	return func(c *config) error {
		if admit == nil {
			return fmt.Errorf("%w: WithAdmission(nil)", ErrInvalidOption)
		}
		c.admit = admit
		return nil
	}
}

// forwarded are the HTTP headers passed on as gRPC metadata of the same
// lower-case name. Authorization is not listed because grpc-gateway always
// forwards it so; listing it would send it twice.
var forwarded = map[string]bool{
	"traceparent":      true,
	"tracestate":       true,
	"x-actor":          true,
	"x-correlation-id": true,
	"x-causation-id":   true,
	"idempotency-key":  true,
}

// incomingHeader forwards the headers listed in forwarded and no other:
// grpc-gateway's default would also pass on every standard header as
// grpcgateway-<name> and any Grpc-Metadata-<name> under its name, none of
// which a service reads, and whose copies, 32 bytes of gRPC overhead each,
// could make headers within the HTTP limit a call's metadata over gRPC's
// (answered 500).
func incomingHeader(key string) (string, bool) {
	if k := strings.ToLower(key); forwarded[k] {
		return k, true
	}
	return "", false
}

// maxForwarded bounds the gRPC metadata the forwarded headers (and
// Authorization) make of a request, counted as gRPC does (name, value and
// 32 bytes a field): a request over it is 431. Well under the metadata a
// gRPC server takes by default (ordersd: 64 KiB), which also holds the
// call's own fields, and far over what a bearer token, a trace context and
// the few other forwarded headers need.
const maxForwarded = 16 << 10

// forwardedSize is the gRPC metadata size the forwarded headers of h make.
func forwardedSize(h http.Header) int {
	n := 0
	for _, k := range forwardedKeys {
		for _, v := range h[k] {
			n += len(k) + len(v) + 32
		}
	}
	return n
}

// forwardedKeys are the forwarded headers and Authorization as net/http
// keys a request's headers (canonical): looked up, not found by lowering
// every header of every request.
var forwardedKeys = func() []string {
	keys := []string{"Authorization"}
	for k := range forwarded {
		keys = append(keys, http.CanonicalHeaderKey(k))
	}
	return keys
}()

// registration adds one service's routes to a mux.
type registration struct {
	service  string
	register func(context.Context, *runtime.ServeMux, grpc.ClientConnInterface) error
}

// registrations lists every service of the contract that has HTTP rules,
// by full name.
var registrations = []registration{
	{ordersv1.OrderCommandService_ServiceDesc.ServiceName, func(ctx context.Context, m *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return ordersv1.RegisterOrderCommandServiceHandlerClient(ctx, m, ordersv1.NewOrderCommandServiceClient(cc))
	}},
	{ordersv1.OrderQueryService_ServiceDesc.ServiceName, func(ctx context.Context, m *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return ordersv1.RegisterOrderQueryServiceHandlerClient(ctx, m, ordersv1.NewOrderQueryServiceClient(cc))
	}},
	{ordersv1.OrderAdminService_ServiceDesc.ServiceName, func(ctx context.Context, m *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return ordersv1.RegisterOrderAdminServiceHandlerClient(ctx, m, ordersv1.NewOrderAdminServiceClient(cc))
	}},
	{ordersv1.OrderAuditService_ServiceDesc.ServiceName, func(ctx context.Context, m *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return ordersv1.RegisterOrderAuditServiceHandlerClient(ctx, m, ordersv1.NewOrderAuditServiceClient(cc))
	}},
	{ordersv1.PaymentAdminService_ServiceDesc.ServiceName, func(ctx context.Context, m *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return ordersv1.RegisterPaymentAdminServiceHandlerClient(ctx, m, ordersv1.NewPaymentAdminServiceClient(cc))
	}},
	{ordersv1.DeadlineAdminService_ServiceDesc.ServiceName, func(ctx context.Context, m *runtime.ServeMux, cc grpc.ClientConnInterface) error {
		return ordersv1.RegisterDeadlineAdminServiceHandlerClient(ctx, m, ordersv1.NewDeadlineAdminServiceClient(cc))
	}},
}

// New returns the HTTP handler of the REST API, /openapi.json,
// /openapi-v2.json, /healthz and /readyz, calling the gRPC services over
// conn (or a WithServiceConn connection). Connections are used, never
// closed: the caller owns them. ctx is only passed to grpc-gateway's
// registration (which does not keep it); each request runs under its own
// context. New fails when conn is nil, with an error wrapping
// ErrInvalidOption when an option is invalid, or when a service cannot be
// registered.
func New(ctx context.Context, conn *grpc.ClientConn, opts ...Option) (http.Handler, error) {
	if conn == nil {
		return nil, errors.New("gateway: nil gRPC connection")
	}
	cfg := config{bodyLimit: DefaultBodyLimit, bodyTimeout: DefaultBodyTimeout, writeTimeout: DefaultWriteTimeout, heartbeat: DefaultHeartbeat, log: slog.Default(), conns: map[string]*grpc.ClientConn{}}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	errs := errorHandlers{log: cfg.log}
	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &jsonMarshaler{JSONPb: runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{EmitUnpopulated: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}}),
		runtime.WithIncomingHeaderMatcher(incomingHeader),
		runtime.WithOutgoingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithOutgoingTrailerMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithErrorHandler(errs.http),
		runtime.WithStreamErrorHandler(errs.stream),
		runtime.WithRoutingErrorHandler(errs.routing),
		runtime.WithForwardResponseOption(setETag),
		runtime.WithForwardResponseOption(startStream),
		// A path variable is decoded whole, as google.api.http asks of a
		// single-segment variable: an id or SKU may hold any printable
		// character, '/' included, which a client sends as %2F. The
		// gateway's legacy mode matched routes on the decoded path, so such
		// a SKU could be added (in the body) but never removed or changed.
		runtime.WithUnescapingMode(runtime.UnescapingModeAllExceptReserved),
		runtime.WithDisablePathLengthFallback(),
		runtime.WithDisableHTTPMethodOverride(),
		runtime.WithMiddlewares(routeTelemetry, pathAgrees),
	)
	// The request conventions (Idempotency-Key, If-Match, X-Min-Position)
	// are applied to the decoded request message just before it is sent.
	checks := []check{{name: "grpc", fn: ConnReady(conn)}}
	checked := map[*grpc.ClientConn]bool{conn: true}
	for _, r := range registrations {
		c := conn
		if sc, ok := cfg.conns[r.service]; ok {
			c = sc
			if !checked[c] {
				checked[c] = true
				checks = append(checks, check{name: "grpc:" + c.Target(), fn: ConnReady(c)})
			}
		}
		if err := r.register(ctx, mux, conventionConn{ClientConnInterface: c, admit: cfg.admit}); err != nil {
			return nil, fmt.Errorf("gateway: register %s: %w", r.service, err)
		}
	}

	h := http.NewServeMux()
	h.HandleFunc("GET /openapi.json", document(openapi.Spec))
	h.HandleFunc("GET /openapi-v2.json", document(openapi.SpecV2))
	h.HandleFunc("GET /healthz", healthz)
	h.Handle("GET /readyz", readyz(append(checks, cfg.checks...)))
	for _, p := range []string{"/openapi.json", "/openapi-v2.json", "/healthz", "/readyz"} {
		// Another method on these is 405 naming the ones they take, as on
		// the API's routes; the catch-all below would answer 404.
		h.Handle(p, OnlyGet())
	}
	queryConn := conn
	if c, ok := cfg.conns[ordersv1.OrderQueryService_ServiceDesc.ServiceName]; ok {
		queryConn = c
	}
	h.Handle("/", noStore(head(bearerChallenge(conventions(cfg, sseWatch{query: ordersv1.NewOrderQueryServiceClient(queryConn), heartbeat: cfg.heartbeat, errs: errs, mux: mux, next: mux})))))
	return h, nil
}

// OnlyGet answers a request to a route that takes only GET (and HEAD),
// with another method, 405 naming those in Allow, in the API's error
// shape, as the API's routes answer one: a listener's catch-all (the
// gateway's) would answer 404.
func OnlyGet() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "GET, HEAD")
		writeStatus(w, r, http.StatusMethodNotAllowed, status.Error(codes.Unimplemented, "method not allowed on this route"))
	})
}

// document serves an OpenAPI document.
func document(spec []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(spec)
	}
}

// routeTelemetry names the request's span "<METHOD> <route template>"
// ("POST /v1/orders/{order_id}:place") and labels its HTTP metrics with the
// template (through otelhttp's labeler), once routing has found the route:
// the path itself holds order ids and would make one span name and one
// metric series per order.
func routeTelemetry(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if p, ok := runtime.HTTPPattern(r.Context()); ok {
			labelRoute(r, RouteTemplate(p))
		}
		next(w, r, params)
	}
}

// labelRoute names r's span after its route template and labels its HTTP
// metrics with it (see routeTelemetry).
func labelRoute(r *http.Request, route string) {
	span := trace.SpanFromContext(r.Context())
	span.SetName(r.Method + " " + route)
	span.SetAttributes(semconv.HTTPRoute(route))
	if l, ok := otelhttp.LabelerFromContext(r.Context()); ok {
		l.Add(semconv.HTTPRoute(route))
	}
}

// pathAgrees refuses (400) a body or a query that names a path parameter
// (an order id, a SKU) with another value than the path: grpc-gateway sets
// the field from the path over theirs without a word, so a PATCH of
// /v1/orders/o2/items/A whose body said "orderId": "o1", "sku": "B"
// changed line A of o2, and DELETE /v1/orders/o2/items/A?sku=B removed A.
// The body is the one the conventions buffered.
func pathAgrees(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if err := queryAgrees(r, params); err != nil {
			writeStatus(w, r, http.StatusBadRequest, err)
			return
		}
		if len(params) == 0 || r.ContentLength <= 0 || r.Body == nil {
			next(w, r, params)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			writeStatus(w, r, http.StatusBadRequest, invalid("body", "could not be read"))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var fields map[string]json.RawMessage
		// Parsed only when it may name a parameter: most bodies do not,
		// and every command would otherwise be decoded twice.
		if namesAny(body, params) && json.Unmarshal(body, &fields) == nil { // a body that is no object is the decoder's 400
			for name, v := range params {
				for _, key := range []string{name, lowerCamel(name)} {
					raw, ok := fields[key]
					if !ok {
						continue
					}
					var s string
					err := json.Unmarshal(raw, &s)
					if err == nil && s == "" {
						// null or "": the field unset (proto3 JSON), as
						// without the key; the path fills it.
						continue
					}
					if err != nil || s != v {
						writeStatus(w, r, http.StatusBadRequest, invalid(key, "differs from the path's; leave it out of the body"))
						return
					}
				}
			}
		}
		next(w, r, params)
	}
}

// queryAgrees returns INVALID_ARGUMENT for a query parameter of r that
// names one of the path's parameters (params) with another value.
func queryAgrees(r *http.Request, params map[string]string) error {
	if len(params) == 0 || r.URL.RawQuery == "" {
		return nil
	}
	q := r.URL.Query()
	for name, v := range params {
		for _, key := range []string{name, lowerCamel(name)} {
			for _, qv := range q[key] {
				if qv != v {
					return invalid(key, "differs from the path's; leave it out of the query")
				}
			}
		}
	}
	return nil
}

// namesAny reports whether body holds, as a string, the name of one of the
// path's parameters or its proto3 JSON name: unless it does, it names none
// as a field (but for a key spelt with JSON escapes, which is not looked
// for: the path's value wins for it, as it did for every body before).
func namesAny(body []byte, params map[string]string) bool {
	for name := range params {
		if bytes.Contains(body, []byte(`"`+name+`"`)) || bytes.Contains(body, []byte(`"`+lowerCamel(name)+`"`)) {
			return true
		}
	}
	return false
}

// lowerCamel is the proto3 JSON name of a snake_case field name.
func lowerCamel(name string) string {
	var b strings.Builder
	up := false
	for _, c := range name {
		switch {
		case c == '_':
			up = true
		case up:
			b.WriteString(strings.ToUpper(string(c)))
			up = false
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// RouteTemplate spells a route's pattern as the HTTP rule wrote it:
// "/v1/orders/{order_id}:place" rather than grpc-gateway's
// "/v1/orders/{order_id=*}:place".
func RouteTemplate(p runtime.Pattern) string { return strings.ReplaceAll(p.String(), "=*}", "}") }

// jsonMarshaler is grpc-gateway's JSONPb, announcing server streams as
// newline-delimited JSON.
type jsonMarshaler struct {
	runtime.JSONPb
}

// ndjson is the Content-Type of server-streaming answers.
const ndjson = "application/x-ndjson"

// StreamContentType is the Content-Type of server-streaming answers.
func (*jsonMarshaler) StreamContentType(any) string { return ndjson }

// NewDecoder reads exactly one JSON value: a body with anything but
// whitespace after it ({…} {"x":1}) is refused rather than half read.
func (m *jsonMarshaler) NewDecoder(r io.Reader) runtime.Decoder {
	return singleValueDecoder{dec: json.NewDecoder(r), m: &m.JSONPb}
}

type singleValueDecoder struct {
	dec *json.Decoder
	m   *runtime.JSONPb
}

// errTrailingData reports a body with more after its JSON value; the
// gateway answers it 400.
var errTrailingData = errors.New("the body holds more than one JSON value")

// Decode returns io.EOF for an empty body, as grpc-gateway expects.
func (d singleValueDecoder) Decode(v any) error {
	var value json.RawMessage
	if err := d.dec.Decode(&value); err != nil {
		return err
	}
	if _, err := d.dec.Token(); !errors.Is(err, io.EOF) {
		return errTrailingData
	}
	return d.m.Unmarshal(value, v)
}

// revisioned is every command response: the order's new revision.
type revisioned interface {
	GetRevision() uint64
}

// startStream answers 200 and the newline-delimited JSON content type at
// once for a server stream that has started (its service sent its
// headers), rather than with its first message: a watch resumed from a
// position, or a followed export of a quiet log, may send none for long,
// and a client or proxy waiting for the response's headers would give up.
// grpc-gateway calls it with a nil message before a stream's first. A
// stream refused before it started (its headers are its trailers) keeps
// its error's HTTP status and content type; one that ends without a
// message (an export that selects nothing) is 200 and NDJSON too, not a
// response without a content type. Neither is known apart here: both end
// before a header was sent.
func startStream(ctx context.Context, w http.ResponseWriter, m proto.Message) error {
	if m != nil {
		return nil
	}
	w.Header().Set("Content-Type", ndjson)
	// no-store rather than no-cache, which lets a cache keep a copy:
	// these streams carry orders' personal data (exports, watches), and
	// a kept copy is out of an erasure's reach. The Server-Sent Events
	// watches say the same.
	// It stays on a refusal, whose answer (a 404, say) holds no longer.
	w.Header().Set("Cache-Control", "no-store")
	md, ok := runtime.ServerMetadataFromContext(ctx)
	if !ok || md.HeaderMD == nil {
		return nil
	}
	// nginx passes each line on at once, as the watches' Server-Sent
	// Events: buffered, a followed export or a watch would be held back.
	// Only on a stream that started: a refusal is one answer, as any.
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	return http.NewResponseController(w).Flush()
}

// noStore keeps every answer of the API out of caches, errors included:
// an order's answers (a GET, a command's, its history, a list) carry its
// customer's personal data, and a copy kept by a browser or a proxy is out
// of an erasure's reach; a kept 404 would be answered for the order once
// it exists. A client that keeps its own copy still revalidates it with
// If-None-Match.
func noStore(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// setETag exposes an order's revision, for If-Match, on GET of an order and
// on command answers (etag).
func setETag(_ context.Context, w http.ResponseWriter, m proto.Message) error {
	var rev uint64
	switch r := m.(type) {
	case *ordersv1.GetOrderResponse:
		rev = r.GetOrder().GetRevision()
	case *ordersv1.WatchOrderResponse, *ordersv1.WatchOrdersResponse:
		// A stream's first message (a change resumed after, or any
		// order's) says nothing of the order's revision now.
		return nil
	case revisioned:
		rev = r.GetRevision()
	}
	if rev > 0 {
		o, _ := m.(interface{ GetOrder() *ordersv1.Order })
		w.Header().Set("ETag", etag(rev, o != nil && o.GetOrder().GetPersonalDataErased()))
	}
	return nil
}

// erasedTag marks the ETag of an order whose personal data was erased. An
// erasure changes what a GET of the order answers (its address erased)
// without an event of the order's own, so without changing its revision:
// a client revalidating its copy of before the erasure (If-None-Match)
// would be told 304 and keep showing the address.
const erasedTag = "-erased"

// etag is the ETag of an order at revision: "<revision>", or
// "<revision>-erased" once its personal data was erased. If-Match takes
// either (parseIfMatch).
func etag(rev uint64, erased bool) string {
	s := strconv.FormatUint(rev, 10)
	if erased {
		s += erasedTag
	}
	return strconv.Quote(s)
}
