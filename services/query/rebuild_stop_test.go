package query_test

import (
	"context"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A rebuild that the read model's runner stopping ends (a node shutting
// down stops its runner before it ends the streams) is answered
// UNAVAILABLE, which its client retries, as the rebuild streams that the
// shutdown ends are: whether the stop cancelled its swap as it caught up
// with the log, or refused the swap it had not begun. It was answered
// CANCELED ("request cancelled", as if its client had left) and INTERNAL
// (logged as this server's fault).
func TestRebuildEndedByTheRunnerStoppingIsUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name string
		// inSwap: the runner stops while the swap reads the log, not
		// while the replay does, before the swap.
		inSwap bool
	}{{"swap in progress", true}, {"swap not begun", false}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			e, gate, target := servedWithGate(t, "rebuilt", 2)
			// The replay waits while the live model moves past its
			// target, so that the swap has a catch-up to read.
			gate.arm(1)
			replayHit, replayGo := gate.hit, gate.open
			stream, err := e.admin.RebuildReadModel(ctx, &ordersv1.RebuildReadModelRequest{})
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-replayHit:
			case <-ctx.Done():
				t.Fatal("the rebuild never read the log")
			}
			createCommitted(t, e, "rebuilt", 1)
			if tc.inSwap {
				gate.arm(target + 1)
				close(replayGo)
				select {
				case <-gate.hit:
				case <-ctx.Done():
					t.Fatal("the swap never caught up with the log")
				}
				e.stop()
			} else {
				e.stop()
				close(replayGo)
			}
			for {
				_, err := stream.Recv()
				if err == nil {
					continue
				}
				if status.Code(err) != codes.Unavailable {
					t.Fatalf("rebuild ended by the runner stopping: %v; want UNAVAILABLE", err)
				}
				break
			}
		})
	}
}
