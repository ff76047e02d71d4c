package app

import (
	"context"

	"github.com/orderstream/orderstream/internal/rpcerr"
	"github.com/orderstream/orderstream/internal/telemetry"
	"google.golang.org/grpc"
)

// limiter bounds the RPCs in flight. A call over the bound is refused at
// once with RESOURCE_EXHAUSTED rather than queued: under overload memory and
// latency stay bounded, and clients back off and retry (their request ids
// make retries safe). Unary calls and streams have separate bounds: a
// stream (an export following the log, a log verification, a rebuild's
// progress) may stay open for hours, and a handful of them must not eat the
// capacity for commands and queries. Health checks and reflection are never
// refused, so an overloaded server is still seen as alive.
//
// Health Watch and reflection streams, which need no slot of the API's,
// have a bound of their own (maxProbeStreams): Watch needs no token, and
// one client could otherwise hold any number open.
type limiter struct{ unarySem, streamSem, probeSem chan struct{} }

// maxProbeStreams bounds the health Watch and reflection streams open at
// once: one per client connection that checks health by watching, with
// room to spare.
const maxProbeStreams = 1024

func newLimiter(unary, streams int) *limiter {
	return &limiter{unarySem: make(chan struct{}, unary), streamSem: make(chan struct{}, streams), probeSem: make(chan struct{}, maxProbeStreams)}
}

var (
	errBusy        = rpcerr.Busy("server busy: too many requests in flight; retry with backoff")
	errStreamsBusy = rpcerr.Busy("server busy: too many streams open; retry with backoff")
)

func acquire(sem chan struct{}, method string) (release func(), ok bool) {
	if telemetry.ProbeOrTool(method) {
		return func() {}, true
	}
	return take(sem)
}

// take takes a slot of sem if one is free.
func take(sem chan struct{}) (release func(), ok bool) {
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, true
	default:
		return nil, false
	}
}

func (l *limiter) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	release, ok := acquire(l.unarySem, info.FullMethod)
	if !ok {
		return nil, errBusy
	}
	defer release()
	return handler(ctx, req)
}

func (l *limiter) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	sem := l.streamSem
	if telemetry.ProbeOrTool(info.FullMethod) {
		sem = l.probeSem
	}
	release, ok := take(sem)
	if !ok {
		return errStreamsBusy
	}
	defer release()
	return handler(srv, ss)
}
