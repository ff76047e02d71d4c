package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/orderstream/orderstream/internal/rpcerr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Client-facing messages that replace internal text.
const (
	msgInternal    = "internal error"
	msgUnavailable = "service unavailable, retry later"
)

// HTTPStatus is the HTTP status the gateway answers for a gRPC status code:
// grpc-gateway's mapping (runtime.HTTPStatusFromCode), except that ABORTED
// for a request that carried If-Match is 412 Precondition Failed.
// FAILED_PRECONDITION (a transition the order's status does not allow)
// stays 400, as in grpc-gateway and Google's API guidelines: the request is
// wrong for the resource's state and retrying it unchanged cannot succeed,
// whereas 409 here means "retry after re-reading" (a stale revision or an
// existing order).
func HTTPStatus(code codes.Code, ifMatch bool) int {
	if code == codes.Aborted && ifMatch {
		return http.StatusPreconditionFailed
	}
	return runtime.HTTPStatusFromCode(code)
}

// statusFor is HTTPStatus for a whole status, details included: an
// Idempotency-Key (request_id) reused for a different request
// (ALREADY_EXISTS with reason REQUEST_ID_REUSED) is 422 Unprocessable
// Content, as payment APIs answer it: the key is known, the body does not
// belong to it.
func statusFor(st *status.Status, ifMatch bool) int {
	if rpcerr.IsRequestIDReused(st) {
		return http.StatusUnprocessableEntity
	}
	return HTTPStatus(st.Code(), ifMatch)
}

type errorHandlers struct {
	log *slog.Logger
}

// http answers a failed unary call, or a decoding error, in grpc-gateway's
// status JSON.
func (e errorHandlers) http(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	var hse *runtime.HTTPStatusError
	if errors.As(err, &hse) {
		err = hse.Err
		if _, ok := status.FromError(err); !ok && hse.HTTPStatus >= 400 && hse.HTTPStatus < 500 {
			// grpc-gateway's own complaint about the request (such as a
			// malformed path escape): the client's mistake, told as such.
			err = status.Error(codes.InvalidArgument, err.Error())
		}
	}
	st := e.clientStatus(ctx, r, err)
	code := statusFor(st, conventionsFrom(r.Context()).hasIfMatch())
	if hse != nil && st.Code() != codes.Aborted {
		code = hse.HTTPStatus
	}
	if streamRequest(r) {
		// The gateway's own refusal of a stream (a bad query parameter)
		// in the shape of the service's: one {"error": …} line.
		writeStatus(w, r, code, st.Err())
		return
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, &runtime.HTTPStatusError{HTTPStatus: code, Err: st.Err()})
}

// stream is the status of a failed server stream: an error line after the
// first message, or the answer before it. A stream whose request a front
// end ended with a status (endedWith) ends with that one.
func (e errorHandlers) stream(ctx context.Context, err error) *status.Status {
	if st, ok := endedWith(ctx); ok {
		return st
	}
	return e.clientStatus(ctx, nil, err)
}

// endedWith returns the status ctx was cancelled with as its cause, if it
// was (see the package comment).
func endedWith(ctx context.Context) (*status.Status, bool) {
	if ctx.Err() == nil {
		return nil, false
	}
	cause := context.Cause(ctx)
	if _, isStatus := cause.(interface{ GRPCStatus() *status.Status }); !isStatus {
		return nil, false
	}
	return status.Convert(cause), true
}

// routing answers a request no route matched.
func (e errorHandlers) routing(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	var st *status.Status
	switch httpStatus {
	case http.StatusNotFound:
		st = status.New(codes.NotFound, "no such route")
	case http.StatusMethodNotAllowed:
		st = status.New(codes.Unimplemented, "method not allowed on this route")
		if rs, err := apiRoutes(); err != nil {
			e.log.ErrorContext(ctx, "gateway: no Allow header: the API's routes are unreadable", "err", err)
		} else if ms := rs.allow(routePath(r)); len(ms) > 0 {
			w.Header().Set("Allow", strings.Join(ms, ", "))
		}
	default:
		st = status.New(codes.InvalidArgument, http.StatusText(httpStatus))
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, &runtime.HTTPStatusError{HTTPStatus: httpStatus, Err: st.Err()})
}

// clientStatus is the status a client may see for err: internal errors and
// connection failures lose their text (and details), which is logged.
func (e errorHandlers) clientStatus(ctx context.Context, r *http.Request, err error) *status.Status {
	st := status.Convert(err)
	if st.Code() > codes.Unauthenticated {
		// No gRPC code: nothing the client can act on, and its text
		// is the service's.
		e.logged(ctx, r, st)
		return status.New(codes.Unknown, msgInternal)
	}
	switch st.Code() {
	case codes.DataLoss:
		// The audit's, about a message of the log it cannot decode or
		// events missing from it: the position, to resume an export
		// after it or to verify the order, is the client's.
		if rpcerr.IsLogDataLoss(st) {
			return st
		}
		if st.Message() != msgInternal || len(st.Details()) > 0 {
			e.logged(ctx, r, st)
		}
		return status.New(st.Code(), msgInternal)
	case codes.Internal, codes.Unknown:
		if st.Message() != msgInternal || len(st.Details()) > 0 {
			e.logged(ctx, r, st)
		}
		return status.New(st.Code(), msgInternal)
	case codes.ResourceExhausted:
		// grpc-go's own, on the gateway's side of the call (an answer
		// over its receive limit): not the client's doing, nor a load
		// it should back off from, as the services' own answers are.
		if strings.HasPrefix(st.Message(), "grpc: ") {
			e.logged(ctx, r, st)
			return status.New(codes.Internal, msgInternal)
		}
	case codes.Unavailable:
		if !serviceUnavailable(st.Message()) {
			e.logged(ctx, r, st)
			return status.New(codes.Unavailable, msgUnavailable)
		}
	}
	return st
}

func (e errorHandlers) logged(ctx context.Context, r *http.Request, st *status.Status) {
	attrs := []any{"code", st.Code().String(), "err", st.Message()}
	if r != nil {
		attrs = append(attrs, "method", r.Method, "path", r.URL.Path)
	}
	e.log.WarnContext(ctx, "rest: error withheld from client", attrs...)
}

// serviceUnavailable tells the UNAVAILABLE answers a service chose to
// send (the read model behind a min_position, the event store or the keys
// out of reach, a shutdown), which are passed on, from every other one:
// grpc-go's own connection errors name addresses and system calls ("write
// tcp 10.0.0.5:51234->10.0.0.7:50051: broken pipe", TLS alerts, "EOF"),
// in more wordings than a list of them could keep up with. The services'
// answers all tell the client to retry; those errors never do. One that
// is withheld reaches the client as a plain "service unavailable, retry
// later", with the same status.
func serviceUnavailable(msg string) bool {
	return strings.Contains(msg, "retry") && !strings.Contains(strings.ToLower(msg), "tcp ")
}

// Refuse answers r, before the gateway sees it, as the gateway answers a
// refusal: err's status in the API's error shape with httpCode, the line
// {"error": status} on a stream route, and a 401 with the Bearer
// challenge, as every 401 of the API carries (RFC 9110 wants one).
func Refuse(w http.ResponseWriter, r *http.Request, httpCode int, err error) {
	writeStatus(&challengeWriter{ResponseWriter: w}, r, httpCode, err)
}

// bearerChallenge makes every 401 (UNAUTHENTICATED) of the API carry
// WWW-Authenticate: Bearer, the challenge RFC 6750 defines for bearer
// tokens and the one ordersd's /metrics sends. RFC 9110 requires a
// challenge on a 401; grpc-gateway would send the status message in its
// place, which is no challenge, and a stream refused before its first
// message (newline-delimited JSON or Server-Sent Events) would send none.
// Only the status line is watched, so every path is covered alike.
//
// The writer also keeps the first status line: a stream answers 200 as
// soon as it has started (startStream), before its first message, and
// grpc-gateway, which has not seen that, writes the status of an error that
// ends the stream before that message as if none had been written.
func bearerChallenge(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&challengeWriter{ResponseWriter: w}, r)
	})
}

type challengeWriter struct {
	http.ResponseWriter
	wrote bool // a status line or body was written
}

func (c *challengeWriter) WriteHeader(code int) {
	if c.wrote {
		return
	}
	c.wrote = true
	if code == http.StatusUnauthorized {
		c.Header().Set("WWW-Authenticate", "Bearer")
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *challengeWriter) Write(b []byte) (int, error) {
	c.wrote = true
	return c.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer, which
// streams flush through and body reads set deadlines on.
func (c *challengeWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (c *requestConventions) hasIfMatch() bool { return c != nil && c.ifMatchApplied }
