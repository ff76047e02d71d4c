package app

import "testing"

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
