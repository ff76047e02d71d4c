// Package rpcguard protects the gRPC server from hostile input and from its
// own bugs, so that each gets the answer it deserves.
//
// A request that does not decode (invalid UTF-8 in a string field, garbage
// bytes, a truncated length) is the client's mistake: grpc-go answers it
// INTERNAL before any interceptor runs, so it is neither logged nor counted
// as a client error. Codec keeps the decode error for the Decoded and
// Stream interceptors, which answer INVALID_ARGUMENT. Decoded belongs
// after authentication, so that a caller without a token is told only
// that (a decode error names the request's message type and what is wrong
// with it); a stream's messages are decoded as its handler receives them,
// after every interceptor.
//
// A panic in a handler is this server's mistake: without recovery it ends
// the process, with every other call in flight. The interceptors recover
// it, log it with the stack (and the trace id the context carries), count it
// in orders.rpc.panics and answer a bare INTERNAL, so nothing of the panic
// reaches the client.
package rpcguard

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	protov2 "google.golang.org/protobuf/proto"
)

// Guard holds the decode errors the codec set aside and the panic counter.
type Guard struct {
	log    *slog.Logger
	panics metric.Int64Counter
	inner  encoding.CodecV2
	// failed maps a message the codec could not decode into to the error,
	// until the interceptor that receives that message takes it. grpc-go
	// may end a call before any interceptor runs (a second message sent
	// on a unary call, a reset), leaving its entry: so the message is
	// reset when its decode fails (a partly decoded megabyte of it is not
	// kept), and the map is started afresh past maxFailed entries (a call
	// whose entry goes then reaches its handler with the reset, empty,
	// request, which the handler refuses as such).
	mu     sync.Mutex
	failed map[any]error
	// held is len(failed), read without the lock: every request asks,
	// and nearly all of them when none is held.
	held atomic.Int64
}

// maxFailed bounds the decode errors set aside for interceptors.
const maxFailed = 4096

// New returns a Guard logging to log and counting panics with mp.
func New(log *slog.Logger, mp metric.MeterProvider) (*Guard, error) {
	panics, err := mp.Meter("github.com/orderstream/orderstream/internal/rpcguard").Int64Counter("orders.rpc.panics",
		metric.WithDescription("RPC handlers that panicked; each was answered INTERNAL."))
	if err != nil {
		return nil, err
	}
	return &Guard{log: log, panics: panics, inner: encoding.GetCodecV2(proto.Name)}, nil
}

// ServerOption makes the server decode requests with the guard's codec; the
// guard's interceptors must be in the same server's chains: Unary and
// Decoded in the unary chain (without Decoded, a unary request that did
// not decode reaches its handler as an empty message), Stream in the
// stream chain.
func (g *Guard) ServerOption() grpc.ServerOption { return grpc.ForceServerCodecV2(codec{g}) }

// codec is the proto codec, except that a request that fails to decode is
// reported to the interceptors instead of to grpc-go.
type codec struct{ g *Guard }

func (codec) Name() string { return proto.Name }

func (c codec) Marshal(v any) (mem.BufferSlice, error) { return c.g.inner.Marshal(v) }

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	if err := c.g.inner.Unmarshal(data, v); err != nil {
		if m, ok := v.(protov2.Message); ok {
			protov2.Reset(m)
		}
		c.g.mu.Lock()
		if c.g.failed == nil || len(c.g.failed) >= maxFailed {
			c.g.failed = map[any]error{}
		}
		c.g.failed[v] = err
		c.g.held.Store(int64(len(c.g.failed)))
		c.g.mu.Unlock()
	}
	return nil
}

// decodeError takes the decode error set aside for m, as INVALID_ARGUMENT.
func (g *Guard) decodeError(m any) error {
	if g.held.Load() == 0 {
		return nil
	}
	g.mu.Lock()
	e, ok := g.failed[m]
	delete(g.failed, m)
	g.held.Store(int64(len(g.failed)))
	g.mu.Unlock()
	if !ok {
		return nil
	}
	name := "message"
	if pm, ok := m.(protov2.Message); ok {
		name = string(pm.ProtoReflect().Descriptor().FullName())
	}
	return status.Errorf(codes.InvalidArgument, "the request is not a valid %s: %v", name, e)
}

// Unary recovers a panic of the handler or of any interceptor after it as
// INTERNAL, and drops the decode error of a request that no Decoded took
// (a call that an interceptor between them refused). It belongs first in
// the chain.
func (g *Guard) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (res any, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, g.recovered(ctx, info.FullMethod, r)
		}
		_ = g.decodeError(req)
	}()
	return handler(ctx, req)
}

// Decoded answers a request that did not decode INVALID_ARGUMENT, saying
// what was wrong with it. It belongs after Unary and authentication, and
// before the interceptors that read the request.
func (g *Guard) Decoded(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := g.decodeError(req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// Stream is Unary and Decoded for streaming RPCs: it recovers panics, and
// each received message is checked as the handler receives it, after
// every interceptor (authentication included) has run.
func (g *Guard) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = g.recovered(ss.Context(), info.FullMethod, r)
		}
	}()
	return handler(srv, guardedStream{ss, g})
}

type guardedStream struct {
	grpc.ServerStream
	g *Guard
}

func (s guardedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.g.decodeError(m)
}

func (g *Guard) recovered(ctx context.Context, method string, r any) error {
	g.panics.Add(ctx, 1, metric.WithAttributes(attribute.String("rpc.method", method)))
	g.log.ErrorContext(ctx, "rpc handler panicked", "method", method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	return status.Error(codes.Internal, "internal error")
}
