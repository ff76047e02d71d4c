package app

import (
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// With every slot taken, the health and reflection services are still
// answered and an API call is refused; a slot comes back when released.
func TestFullLimiterStillServesProbesAndTools(t *testing.T) {
	sem := make(chan struct{}, 1)
	release, ok := acquire(sem, "/orders.v1.OrderQueryService/GetOrder")
	if !ok {
		t.Fatal("the one slot was refused")
	}
	for _, m := range []string{"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"} {
		if r, ok := acquire(sem, m); !ok {
			t.Fatalf("%s refused with the slots taken", m)
		} else {
			r()
		}
	}
	if _, ok := acquire(sem, "/orders.v1.OrderCommandService/CreateOrder"); ok {
		t.Fatal("an API call took a slot that was taken")
	}
	release()
	if _, ok := acquire(sem, "/orders.v1.OrderCommandService/CreateOrder"); !ok {
		t.Fatal("a released slot was not given again")
	}
}

// Health Watch and reflection streams take no slot of the API's streams,
// but have a bound of their own: Watch needs no token, and one client could
// otherwise hold any number open. An API stream is not refused for them.
func TestProbeStreamsHaveABoundOfTheirOwn(t *testing.T) {
	const maxProbeStreams = 1024 // README's figure
	l := newLimiter(1, 1)
	block := make(chan struct{})
	started := make(chan struct{}, maxProbeStreams)
	done := make(chan error, maxProbeStreams+1)
	watch := &grpc.StreamServerInfo{FullMethod: "/grpc.health.v1.Health/Watch", IsServerStream: true}
	for range maxProbeStreams {
		go func() {
			done <- l.stream(nil, nil, watch, func(any, grpc.ServerStream) error { started <- struct{}{}; <-block; return nil })
		}()
	}
	for range maxProbeStreams {
		<-started
	}
	if err := l.stream(nil, nil, watch, func(any, grpc.ServerStream) error { return nil }); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("watch stream %d: %v, want RESOURCE_EXHAUSTED", maxProbeStreams+1, err)
	}
	api := &grpc.StreamServerInfo{FullMethod: "/orders.v1.OrderQueryService/WatchOrders", IsServerStream: true}
	if err := l.stream(nil, nil, api, func(any, grpc.ServerStream) error { return nil }); err != nil {
		t.Errorf("an API stream beside the watches: %v", err)
	}
	close(block)
	for range maxProbeStreams {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if err := l.stream(nil, nil, watch, func(any, grpc.ServerStream) error { return nil }); err != nil {
		t.Errorf("a watch once the others ended: %v", err)
	}
}
