package app

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// limiter bounds the RPCs in flight. A call over the bound is refused at
// once with RESOURCE_EXHAUSTED rather than queued: under overload memory and
// latency stay bounded, and clients back off and retry (their request ids
// make retries safe). Health checks and reflection are never refused, so an
// overloaded server is still seen as alive.
type limiter struct{ sem chan struct{} }

func newLimiter(n int) *limiter { return &limiter{sem: make(chan struct{}, n)} }

var errBusy = status.Error(codes.ResourceExhausted, "server busy: too many requests in flight; retry with backoff")

func exempt(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.") || strings.HasPrefix(method, "/grpc.reflection.")
}

func (l *limiter) acquire(method string) (release func(), ok bool) {
	if exempt(method) {
		return func() {}, true
	}
	select {
	case l.sem <- struct{}{}:
		return func() { <-l.sem }, true
	default:
		return nil, false
	}
}

func (l *limiter) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	release, ok := l.acquire(info.FullMethod)
	if !ok {
		return nil, errBusy
	}
	defer release()
	return handler(ctx, req)
}

func (l *limiter) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	release, ok := l.acquire(info.FullMethod)
	if !ok {
		return errBusy
	}
	defer release()
	return handler(srv, ss)
}
