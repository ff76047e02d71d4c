package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"mime"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/rpcerr"
	"github.com/orderstream/orderstream/internal/writewait"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// requestConventions are what a request's headers ask of the request
// message.
type requestConventions struct {
	idempotencyKey string // fills request_id
	ifMatch        bool   // If-Match named a revision
	revision       uint64 // fills expected_revision when ifMatch
	ifMatchTag     string // the entity tag If-Match named, when ifMatch
	// ifMatchWeak: If-Match named a weak tag, which strong comparison
	// (RFC 9110, section 13.1.1) never matches: 412, whatever the order.
	ifMatchWeak bool
	// ifMatchApplied: the request message took the revision, or the
	// weak If-Match is the answer (unmet); a route without
	// expected_revision otherwise ignores If-Match, and its ABORTED is
	// contention, 409, not a failed precondition, 412.
	ifMatchApplied bool
	minPosition    uint64 // raises consistency.min_position
	// lastEventID is the Last-Event-ID header as sent: a watch resumes
	// after it (from_position), whatever its answer's media type; it is
	// parsed only where a watch takes it, so no other route refuses it.
	lastEventID string
	query       url.Values
	// bodyOnly: the request's method carries a body (POST, PUT, PATCH),
	// and every such route maps the whole body (body: "*"), so
	// grpc-gateway reads no query parameter for it.
	bodyOnly bool
	// unmet is the answer (412) to a command whose precondition fails
	// whatever the resource's state: a weak If-Match, or If-None-Match: *
	// (conditional). It is given in place of the call (see
	// conventionConn.unmet).
	unmet error
	// carried: unmet went into the command as an expected revision no
	// order reaches (apply), so the call is made and the service answers
	// first; its ABORTED is then unmet.
	carried bool
}

// unreachedRevision is the expected revision that carries a failed
// precondition into an order's command: no order has that many events,
// so an order that exists refuses it (ABORTED), while one that does not
// is NOT_FOUND, a malformed command INVALID_ARGUMENT and a caller without
// the role PERMISSION_DENIED, as without the condition.
const unreachedRevision = math.MaxUint64

type conventionsKey struct{}

func conventionsFrom(ctx context.Context) *requestConventions {
	c, _ := ctx.Value(conventionsKey{}).(*requestConventions)
	return c
}

// conventions checks headers and body before grpc-gateway sees a request:
// it refuses forwarded headers that would make too much gRPC metadata
// (431, maxForwarded), parses the convention headers into the context (400 when malformed),
// rejects a path or query parameter that is not UTF-8 once percent-decoded
// (400: a proto string could not carry it), enforces the body's
// Content-Type (415) and size cap (413), and buffers the body.
func conventions(cfg config, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := forwardedSize(r.Header); n > maxForwarded {
			writeStatus(w, r, http.StatusRequestHeaderFieldsTooLarge, status.Errorf(codes.ResourceExhausted,
				"the forwarded headers (Authorization, traceparent, tracestate, X-Actor, X-Correlation-Id, X-Causation-Id, Idempotency-Key) make %d bytes of gRPC metadata, over %d", n, maxForwarded))
			return
		}
		conv, err := readConventions(r)
		if err != nil {
			writeStatus(w, r, http.StatusBadRequest, err)
			return
		}
		withBody := r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch
		if conv.ifMatchWeak && r.Method != http.MethodGet && r.Method != http.MethodHead {
			// As a command's failed If-Match (ABORTED, 412, its If-Match
			// applied); a read answers 412 from its ETag (conditional).
			conv.unmet = status.Error(codes.Aborted, "If-Match: a weak entity tag never matches; send the ETag as given")
			conv.ifMatchApplied = true
		}
		conv.bodyOnly = withBody
		req := r.WithContext(context.WithValue(r.Context(), conventionsKey{}, conv))
		if r.ContentLength != 0 || withBody {
			body, code, err := readBody(w, r, cfg.bodyLimit, cfg.bodyTimeout, withBody)
			if err != nil {
				// What is left of the body is not worth reading (net/http
				// would otherwise drain it to reuse the connection).
				w.Header().Set("Connection", "close")
				writeStatus(w, r, code, err)
				return
			}
			if !withBody && len(bytes.TrimSpace(body)) > 0 {
				// The routes of the other methods take every field from
				// the path and the query: grpc-gateway would drop a body,
				// and with it, say, a DELETE's expectedRevision.
				writeStatus(w, r, http.StatusBadRequest, invalid("body", "must be empty for "+r.Method+"; send the fields in the query"))
				return
			}
			req.Body = io.NopCloser(bytes.NewReader(body))
			req.ContentLength = int64(len(body))
		}
		conditional(writewait.NewWriter(w, cfg.writeTimeout), req, conv, next)
	})
}

// parseURL returns u's query parameters (nil for none), parsed strictly,
// and rejects a decoded path, query parameter name or value that is not
// valid UTF-8: it would reach a proto string field, which cannot hold it,
// and fail as an internal error when the request is marshalled. URL.Query
// drops a pair it cannot parse (a ';', a bad escape) without a word: a
// command's ?expectedRevision=99; then skipped its concurrency check
// (grpc-gateway reads no query on a body route), and a watch's dropped
// filter watched every order; such a query is refused.
func parseURL(u *url.URL) (url.Values, error) {
	if !utf8.ValidString(u.Path) {
		return nil, invalid("path", "must be valid UTF-8 once percent-decoded")
	}
	if u.RawQuery == "" {
		return nil, nil
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, invalid("query", "must be name=value pairs joined by '&', percent-escaped")
	}
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if !utf8.ValidString(k) {
			return nil, invalid(strings.ToValidUTF8(k, "\uFFFD"), "query parameter name must be valid UTF-8 once percent-decoded")
		}
		for _, v := range q[k] {
			if !utf8.ValidString(v) {
				return nil, invalid(k, "must be valid UTF-8 once percent-decoded")
			}
		}
	}
	return q, nil
}

// readConventions is what every REST request passes before its handler,
// streams included: the convention headers parse, and the URL decodes to
// UTF-8 with a query that parses (parseURL), kept for apply. Either
// failing is a 400.
func readConventions(r *http.Request) (*requestConventions, error) {
	conv, err := parseConventions(r.Header)
	if err != nil {
		return nil, err
	}
	conv.query, err = parseURL(r.URL)
	return conv, err
}

// parseConventions reads Idempotency-Key, If-Match and X-Min-Position.
func parseConventions(h http.Header) (*requestConventions, error) {
	c := &requestConventions{idempotencyKey: h.Get("Idempotency-Key"), lastEventID: h.Get("Last-Event-ID")}
	if len(h.Values("Idempotency-Key")) > 1 {
		return nil, invalid("Idempotency-Key", "must be given once")
	}
	if !utf8.ValidString(c.idempotencyKey) {
		return nil, invalid("Idempotency-Key", "must be valid UTF-8")
	}
	switch im := h.Values("If-Match"); len(im) {
	case 0:
	case 1:
		tag, weak := strings.CutPrefix(strings.TrimSpace(im[0]), "W/")
		rev, ok, err := parseIfMatch(tag)
		switch {
		case err != nil:
			return nil, err
		case weak && !ok: // W/*
			return nil, invalid("If-Match", `must be * or one quoted revision such as "42"`)
		}
		c.ifMatch, c.ifMatchWeak, c.revision, c.ifMatchTag = ok, weak, rev, strings.TrimSpace(im[0])
	default:
		return nil, invalid("If-Match", `must be given once, as one quoted revision such as "42"`)
	}
	if mp := h.Values("X-Min-Position"); len(mp) > 0 {
		n, err := strconv.ParseUint(strings.TrimSpace(mp[0]), 10, 64)
		if err != nil || len(mp) > 1 {
			return nil, invalid("X-Min-Position", "must be one log position (a non-negative integer)")
		}
		c.minPosition = n
	}
	return c, nil
}

// parseIfMatch accepts * (no condition) or one strong entity tag holding a
// decimal revision, as this gateway issues them (etag): "42", or
// "42-erased" for an order whose personal data was erased, the same
// revision.
func parseIfMatch(v string) (rev uint64, ok bool, err error) {
	v = strings.TrimSpace(v)
	if v == "*" {
		return 0, false, nil
	}
	bad := invalid("If-Match", `must be * or one quoted revision such as "42"`)
	if len(v) < 3 || v[0] != '"' || v[len(v)-1] != '"' {
		return 0, false, bad
	}
	digits := strings.TrimSuffix(v[1:len(v)-1], erasedTag)
	// The gateway's tags have no leading zero: "01" is not "1", which
	// strong comparison (RFC 9110) would not take for it.
	if strings.TrimLeft(digits, "0123456789") != "" || len(digits) > 1 && digits[0] == '0' {
		return 0, false, bad
	}
	rev, err = strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return 0, false, bad
	}
	return rev, true, nil
}

// readBody reads the capped body of a request, whose Content-Type must be
// JSON when json is set; without, the caller refuses any body (a GET's or
// a DELETE's) as 400 whatever its type, rather than have it sent again as
// JSON to be refused then. On failure it returns the HTTP status to answer
// and the status error.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, timeout time.Duration, json bool) ([]byte, int, error) {
	rc := http.NewResponseController(w)
	// refuse answers without reading the rest of the body: net/http
	// drains what is left of one before it closes the connection, without
	// a deadline unless one is left past, and a client that sent part of a
	// body would hold the connection (and its goroutine) for as long as it
	// liked after the answer.
	refuse := func(code int, err error) ([]byte, int, error) {
		_ = rc.SetReadDeadline(time.Now()) // unsupported by some writers: then unbounded
		return nil, code, err
	}
	ct := r.Header.Get("Content-Type")
	unsupported := status.Error(codes.InvalidArgument, "Content-Type must be application/json (UTF-8)")
	if json && ct != "" && !isJSON(ct) && r.ContentLength != 0 {
		return refuse(http.StatusUnsupportedMediaType, unsupported)
	}
	// A coded body (gzip, say) is not decoded here: 415, as RFC 9110
	// (section 8.4) has it, rather than the 400 of JSON that does not
	// parse, which would tell the client its JSON was wrong.
	if ce := strings.TrimSpace(r.Header.Get("Content-Encoding")); ce != "" && !strings.EqualFold(ce, "identity") && r.ContentLength != 0 {
		return refuse(http.StatusUnsupportedMediaType, status.Error(codes.InvalidArgument, "Content-Encoding is not accepted: send the body uncoded"))
	}
	_ = rc.SetReadDeadline(time.Now().Add(timeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		return refuse(http.StatusRequestEntityTooLarge, status.Errorf(codes.ResourceExhausted, "request body exceeds %d bytes", limit))
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return refuse(http.StatusRequestTimeout, status.Errorf(codes.DeadlineExceeded, "request body not received within %s", timeout))
	}
	if err != nil {
		return refuse(http.StatusBadRequest, status.Error(codes.InvalidArgument, "could not read the request body"))
	}
	_ = rc.SetReadDeadline(time.Time{})
	if json && len(body) > 0 && !isJSON(ct) {
		return nil, http.StatusUnsupportedMediaType, unsupported
	}
	return body, 0, nil
}

// isJSON accepts application/json and application/*+json, in UTF-8.
func isJSON(ct string) bool {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return false
	}
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// conventionConn applies the request conventions to each request message
// as grpc-gateway sends it: after decoding (so a body value and a header
// value can be compared, whatever JSON spelling the body used) and only to
// messages that have the field, so Idempotency-Key on a query or If-Match
// on a GET changes nothing. A command whose precondition fails is not
// sent (unmet).
type conventionConn struct {
	grpc.ClientConnInterface
	// admit, when set, returns the status error the services would refuse
	// a call of a method with the call's metadata (WithAdmission).
	admit func(md metadata.MD, method string) error
}

// NewStream returns a stream whose request message gets the conventions.
// The call is made only with the request (SendMsg, which a server stream's
// client sends first): a request the conventions refuse, or whose
// precondition fails, is not sent, and the server sees no call of it.
func (c conventionConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if desc.ClientStreams {
		// None is served over REST; a client stream sends more than
		// one message, and the call cannot wait for the first.
		return c.ClientConnInterface.NewStream(ctx, desc, method, opts...)
	}
	return &conventionStream{ctx: ctx, conn: c, desc: desc, method: method, opts: opts, conv: conventionsFrom(ctx)}, nil
}

// conventionStream is a server stream opened by its request (SendMsg).
type conventionStream struct {
	grpc.ClientStream // nil until SendMsg opened it
	ctx               context.Context
	conn              conventionConn
	desc              *grpc.StreamDesc
	method            string
	opts              []grpc.CallOption
	conv              *requestConventions
}

// SendMsg applies the conventions to m, then opens the call and sends it.
func (s *conventionStream) SendMsg(m any) error {
	if pm, ok := m.(proto.Message); ok {
		if err := s.conv.apply(pm.ProtoReflect()); err != nil {
			return err
		}
	}
	if err := s.conn.unmet(s.ctx, s.conv, s.method); err != nil {
		return err
	}
	if s.ClientStream == nil {
		cs, err := s.conn.ClientConnInterface.NewStream(s.ctx, s.desc, s.method, s.opts...)
		if err != nil {
			return err
		}
		s.ClientStream = cs
	}
	return s.ClientStream.SendMsg(m)
}

// Context is the call's, or before it is opened the context it will have.
func (s *conventionStream) Context() context.Context {
	if s.ClientStream == nil {
		return s.ctx
	}
	return s.ClientStream.Context()
}

// Invoke applies the conventions to args, then calls the server.
func (c conventionConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	conv := conventionsFrom(ctx)
	if m, ok := args.(proto.Message); ok {
		if err := conv.apply(m.ProtoReflect()); err != nil {
			return err
		}
	}
	if err := c.unmet(ctx, conv, method); err != nil {
		return err
	}
	err := c.ClientConnInterface.Invoke(ctx, method, args, reply, opts...)
	if conv != nil && conv.carried && carriedToUnmet(err) {
		return conv.unmet
	}
	return err
}

// carriedToUnmet reports whether err, the answer to a command carrying a
// failed precondition (unreachedRevision), means the order exists, so
// that the precondition's 412 is the answer: ABORTED, the revision's
// mismatch; a replay of the request id's original (nil), which is the
// only success such a command can have, since it never appends; and
// REQUEST_ID_REUSED, as the original was recorded without the
// unreached revision the request digest now holds. Without the condition
// the last two were the original's answer, and RFC 9110 has a condition
// judged whenever that would be a 2xx.
func carriedToUnmet(err error) bool {
	st, _ := status.FromError(err)
	return err == nil || st.Code() == codes.Aborted || rpcerr.IsRequestIDReused(st)
}

// unmet returns the 412 of a request whose precondition fails (conv.unmet)
// once nothing else would refuse it: RFC 9110 (section 13.2.1) has a
// server ignore the preconditions of a request it would answer with
// anything but a 2xx or 412 without them. So it is asked here, where the
// request has been routed (404, 405) and its message decoded and checked
// (400), and, with admit, after the services' authorization (401, 403),
// which a call never made would not reach. The request is never sent: a
// failed precondition changes nothing. An order's command carries it
// instead (apply, carried), so that its service answers first (404 for an
// order that does not exist).
func (c conventionConn) unmet(ctx context.Context, conv *requestConventions, method string) error {
	if conv == nil || conv.unmet == nil || conv.carried {
		return nil
	}
	if c.admit != nil {
		md, _ := metadata.FromOutgoingContext(ctx)
		if err := c.admit(md, method); err != nil {
			return err
		}
	}
	return conv.unmet
}

// apply rejects any query parameter of a request with a body, and a query
// parameter that names no field of m: grpc-gateway would ignore either (a
// body: "*" route reads no query parameter at all), so a misspelt filter
// would silently match everything and ?expectedRevision=… on a command
// would skip its concurrency check. It then fills request_id,
// expected_revision and consistency.min_position of m where the message
// has them. A body value that contradicts a header is INVALID_ARGUMENT,
// except min_position, where the larger one wins.
func (c *requestConventions) apply(m protoreflect.Message) error {
	if c == nil {
		return nil
	}
	keys := slices.Sorted(maps.Keys(c.query))
	if c.bodyOnly && len(keys) > 0 {
		return invalid(keys[0], "query parameters are not read on POST, PUT or PATCH; send the field in the JSON body")
	}
	for _, k := range keys {
		if !namesField(m.Descriptor(), k) {
			return status.Errorf(codes.InvalidArgument, "unknown query parameter %q", k)
		}
	}
	fields := m.Descriptor().Fields()
	if c.idempotencyKey != "" {
		if fd := fields.ByName("request_id"); isScalar(fd, protoreflect.StringKind) {
			switch cur := m.Get(fd).String(); cur {
			case "":
				m.Set(fd, protoreflect.ValueOfString(c.idempotencyKey))
			case c.idempotencyKey:
			default:
				return invalid("request_id", "differs from the Idempotency-Key header")
			}
		}
	}
	if c.ifMatch {
		if fd := fields.ByName("expected_revision"); isScalar(fd, protoreflect.Uint64Kind) {
			if m.Has(fd) && m.Get(fd).Uint() != c.revision {
				return invalid("expected_revision", "differs from the If-Match header")
			}
			m.Set(fd, protoreflect.ValueOfUint64(c.revision))
			c.ifMatchApplied = true
		}
	}
	if c.unmet != nil {
		if fd := fields.ByName("expected_revision"); isScalar(fd, protoreflect.Uint64Kind) {
			m.Set(fd, protoreflect.ValueOfUint64(unreachedRevision))
			c.ifMatchApplied, c.carried = true, true
		}
	}
	if c.minPosition > 0 {
		if fd := fields.ByName("consistency"); fd != nil && fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap() {
			sub := m.Mutable(fd).Message()
			if mp := sub.Descriptor().Fields().ByName("min_position"); isScalar(mp, protoreflect.Uint64Kind) && sub.Get(mp).Uint() < c.minPosition {
				sub.Set(mp, protoreflect.ValueOfUint64(c.minPosition))
			}
		}
	}
	return c.applyLastEventID(m)
}

// applyLastEventID sets a watch's from_position to Last-Event-ID, over
// any the query gave: the last event the client saw, to resume after. A
// StreamEvents from_position is inclusive, and takes no Last-Event-ID.
func (c *requestConventions) applyLastEventID(m protoreflect.Message) error {
	if c.lastEventID == "" {
		return nil
	}
	switch m.Interface().(type) {
	case *ordersv1.WatchOrderRequest, *ordersv1.WatchOrdersRequest:
	default:
		return nil
	}
	n, err := strconv.ParseUint(strings.TrimSpace(c.lastEventID), 10, 64)
	if err != nil {
		return invalid("Last-Event-ID", "must be a log position (a non-negative integer)")
	}
	m.Set(m.Descriptor().Fields().ByName("from_position"), protoreflect.ValueOfUint64(n))
	return nil
}

// namesField reports whether a query parameter name (a dotted path of proto
// or JSON field names, optionally ending in [mapkey]) names a field of md.
func namesField(md protoreflect.MessageDescriptor, key string) bool {
	if i := strings.IndexByte(key, '['); i > 0 && strings.HasSuffix(key, "]") {
		key = key[:i]
	}
	segs := strings.Split(key, ".")
	for i, seg := range segs {
		if md == nil {
			return false
		}
		fd := md.Fields().ByName(protoreflect.Name(seg))
		if fd == nil {
			fd = md.Fields().ByJSONName(seg)
		}
		if fd == nil {
			return false
		}
		if i < len(segs)-1 {
			md = fd.Message()
		}
	}
	return true
}

func isScalar(fd protoreflect.FieldDescriptor, k protoreflect.Kind) bool {
	return fd != nil && fd.Kind() == k && fd.Cardinality() != protoreflect.Repeated
}

// invalid is INVALID_ARGUMENT naming field, with a BadRequest detail as the
// services send it.
func invalid(field, reason string) error {
	st := status.New(codes.InvalidArgument, field+": "+reason)
	if d, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: reason}}}); err == nil {
		return d.Err()
	}
	return st.Err()
}

// statusJSON renders statuses exactly as grpc-gateway's error handler does.
var statusJSON = protojson.MarshalOptions{EmitUnpopulated: true}

// writeStatus answers err (a status error) in grpc-gateway's status JSON,
// for errors found before a request reaches grpc-gateway; to a request for
// a newline-delimited JSON stream (streamRequest), as the stream's one
// line {"error": status}, as the services' refusals of a stream answer.
func writeStatus(w http.ResponseWriter, r *http.Request, httpCode int, err error) {
	b, merr := statusJSON.Marshal(status.Convert(err).Proto())
	if merr != nil {
		b = []byte(fmt.Sprintf(`{"code":%d,"message":"internal error","details":[]}`, codes.Internal))
		httpCode = http.StatusInternalServerError
	}
	if streamRequest(r) {
		b = append(append([]byte(`{"error":`), b...), "}\n"...)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpCode)
	_, _ = w.Write(b)
}

// StreamRoutes returns what reports whether a request is to a route whose
// answer is a stream (newline-delimited JSON, or Server-Sent Events on the
// watch routes): the requests a front end ends at shutdown. The routes come
// from the API's OpenAPI document, which is generated from the HTTP rules
// the gateway registers; the error is that of a document that cannot be
// read.
func StreamRoutes() (func(*http.Request) bool, error) {
	rs, err := apiRoutes()
	if err != nil {
		return nil, err
	}
	return func(r *http.Request) bool { return rs.streams(r.Method, routePath(r)) }, nil
}

// streamRequest reports whether r asks for a newline-delimited JSON stream:
// a route answering a stream, but for a watch asked for as Server-Sent
// Events, whose refusals are the status alone.
func streamRequest(r *http.Request) bool {
	p := routePath(r)
	if wantsEventStream(r) && isWatchPath(p) {
		return false
	}
	rs, err := apiRoutes()
	return err == nil && rs.streams(r.Method, p)
}
