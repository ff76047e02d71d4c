package app_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/app"
	"github.com/orderstream/orderstream/internal/app/apptest"
)

// Run that ends on a failure of its own (here the projection runner, whose
// read model cannot be written, stops before it caught up) returns while
// the caller's context still runs: nothing it started may outlive it. The
// query role's goroutine that waits for the read model to catch up (to log
// it) waits on the caller's context instead, and stays behind, holding the
// runner, for as long as that context lives.
func TestRunLeavesNoGoroutineAfterAFailure(t *testing.T) {
	dir := t.TempDir()
	// A read model with a checkpoint, then an event past it.
	first := startRunning(t, map[string]string{"DATA_DIR": dir, "ROLES": "command,query"})
	cmd := ordersv1.NewOrderCommandServiceClient(dial(t, first.addrs.GRPC))
	res, err := cmd.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: "l-1", OrderId: "l-1", CustomerId: "c", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ordersv1.NewOrderQueryServiceClient(dial(t, first.addrs.GRPC)).GetOrder(t.Context(),
		&ordersv1.GetOrderRequest{OrderId: "l-1", Consistency: &ordersv1.Consistency{MinPosition: res.GetPosition()}}); err != nil {
		t.Fatal(err)
	}
	first.cancel()
	<-first.finished
	breakReadModel(t, filepath.Join(dir, "readmodel", "orders.db"))
	second := startRunning(t, map[string]string{"DATA_DIR": dir, "ROLES": "command"})
	if _, err := ordersv1.NewOrderCommandServiceClient(dial(t, second.addrs.GRPC)).CreateOrder(t.Context(),
		&ordersv1.CreateOrderRequest{RequestId: "l-2", OrderId: "l-2", CustomerId: "c", Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	second.cancel()
	<-second.finished

	// The caller's context lives on after Run returns, as a test's or an
	// embedding program's does.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cfg := apptest.Config(t, map[string]string{"DATA_DIR": dir, "ROLES": "command,query"})
	err = app.Run(ctx, cfg, slog.New(slog.DiscardHandler), nil)
	if err == nil || !strings.Contains(err.Error(), "projection stopped") {
		t.Fatalf("Run on a read model that cannot be written: %v, want the projection's failure", err)
	}
	buf := make([]byte, 1<<22)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, g := range strings.Split(stacks, "\n\n") {
		// Blocked, not on its way out: a server's goroutine that returns
		// as Run returns is not counted.
		blocked := strings.Contains(g, " [select") || strings.Contains(g, " [chan receive")
		// The roles' goroutines only: another test's node may still be
		// winding down its servers.
		if blocked && strings.Contains(g, "internal/app.(*node).register") {
			t.Errorf("a goroutine Run started is still running after Run returned:\n%s", g)
		}
	}
}
