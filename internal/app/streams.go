package app

import (
	"context"
	"fmt"
	"net/http"

	"github.com/orderstream/orderstream/internal/httpapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// streamEnder ends the REST API's streaming requests (the watches, the
// event stream, the log's verification, a rebuild) when the HTTP server
// shuts down. They last as long as their client wants, each holding an RPC
// open, so http.Server.Shutdown would wait its whole deadline for them and
// the gRPC server's drain would then wait for their RPCs. Other requests
// are left to finish: ending them would turn a command in flight into an
// error its client has to retry.
type streamEnder struct {
	// stream reports a request to a streaming route.
	stream func(*http.Request) bool
	// ctx is done once shutdown began.
	ctx context.Context
	end context.CancelFunc
}

// newStreamEnder finds the streaming routes as the gateway does
// (httpapi.StreamRoutes).
func newStreamEnder() (*streamEnder, error) {
	stream, err := httpapi.StreamRoutes()
	if err != nil {
		return nil, fmt.Errorf("gateway: streaming routes: %w", err)
	}
	ctx, end := context.WithCancel(context.Background())
	return &streamEnder{stream: stream, ctx: ctx, end: end}, nil
}

// handler serves next, under a context that ends at shutdown for a request
// to a streaming route, with errShuttingDown as its cause: the gateway ends
// the stream with that status (httpapi.New), as the gRPC streams end, not
// as one whose client left.
func (s *streamEnder) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.stream(r) {
			ctx, cancel := context.WithCancelCause(r.Context())
			defer cancel(nil)
			defer context.AfterFunc(s.ctx, func() { cancel(errShuttingDown) })()
			r = r.WithContext(ctx)
		}
		next.ServeHTTP(w, r)
	})
}

// errShuttingDown ends the server-streaming RPCs at shutdown: UNAVAILABLE,
// which clients retry, on another node or on this one once restarted (a
// watch resuming from the last position it received).
var errShuttingDown = status.Error(codes.Unavailable, "the server is shutting down; retry (a watch resumes from the last position it received)")

// rpcStreamEnder is streamEnder for gRPC: it ends the server-streaming RPCs
// (watches, the followed event stream, the log's verification, a rebuild)
// when shutdown begins. GracefulStop waits for every RPC, and these last
// as long as their client wants: left open, they would hold each shutdown
// for the whole SHUTDOWN_TIMEOUT. Unary RPCs are left to finish.
type rpcStreamEnder struct {
	ctx context.Context
	end context.CancelFunc
}

func newRPCStreamEnder() *rpcStreamEnder {
	ctx, end := context.WithCancel(context.Background())
	return &rpcStreamEnder{ctx: ctx, end: end}
}

// stream runs a server-streaming handler under a context that also ends at
// shutdown, and answers errShuttingDown for a stream that shutdown ended,
// whatever its handler returned: a handler may take its context's end for
// its client's leaving and return nil, and a client would then take the end
// of a followed stream for its last message.
func (e *rpcStreamEnder) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !info.IsServerStream {
		return handler(srv, ss)
	}
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	stop := context.AfterFunc(e.ctx, cancel)
	err := handler(srv, &streamCtx{ServerStream: ss, ctx: ctx})
	if ended := !stop(); ended && ss.Context().Err() == nil {
		return errShuttingDown
	}
	return err
}

// streamCtx is a server stream with a context of its own.
type streamCtx struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *streamCtx) Context() context.Context { return s.ctx }
