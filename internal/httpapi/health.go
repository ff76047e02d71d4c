package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
)

// readyTimeout bounds one /readyz request.
const readyTimeout = time.Second

// healthz answers 200 while the process runs. Liveness must not depend on
// NATS or the gRPC server, or an orchestrator would restart replicas for an
// outage restarts cannot fix.
func healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
}

// readyz runs every check concurrently and answers 200
// {"status":"ready","checks":{name:"ok",…}} or 503 {"status":"not ready",…}
// with each failed check's error text under its name.
func readyz(checks []check) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		results := make(map[string]string, len(checks))
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, c := range checks {
			wg.Go(func() {
				msg := "ok"
				if err := runCheck(ctx, c); err != nil {
					msg = err.Error()
				}
				mu.Lock()
				results[c.name] = msg
				mu.Unlock()
			})
		}
		wg.Wait()
		code, state := http.StatusOK, "ready"
		for _, m := range results {
			if m != "ok" {
				code, state = http.StatusServiceUnavailable, "not ready"
			}
		}
		writeJSON(w, code, map[string]any{"status": state, "checks": results})
	}
}

// runCheck runs c, turning a panic or an overrun into a failure.
func runCheck(ctx context.Context, c check) error {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("check panicked: %v", p)
			}
		}()
		done <- c.fn(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("no answer within %s", readyTimeout)
	}
}

// ConnReady returns a readiness check of a gRPC client connection: it fails
// while conn cannot reach its server (TRANSIENT_FAILURE or SHUTDOWN), and
// while it is still connecting when ctx ends. An idle connection (never used,
// or idle for a while) is asked to connect first, so a server that is down
// is reported before the first request finds it out. ordersd uses it to
// fold the gateway's upstream connections into its own /readyz.
func ConnReady(conn *grpc.ClientConn) func(context.Context) error {
	return func(ctx context.Context) error {
		s := conn.GetState()
		if s == connectivity.Idle {
			conn.Connect()
		}
		for s == connectivity.Idle || s == connectivity.Connecting {
			if !conn.WaitForStateChange(ctx, s) {
				return fmt.Errorf("gRPC connection %s", s)
			}
			s = conn.GetState()
		}
		switch s {
		case connectivity.TransientFailure, connectivity.Shutdown:
			return fmt.Errorf("gRPC connection %s", s)
		}
		return nil
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
