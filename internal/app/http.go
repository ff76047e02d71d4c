package app

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// Check is one readiness condition; a nil error means ready.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// healthz answers 200 while the process runs: liveness must not depend on
// NATS, or an orchestrator would restart every replica during a NATS outage
// that restarts cannot fix.
func healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
}

// readyz runs every check concurrently (bounded by one second) and answers
// 503 naming each failed check when any fails.
func readyz(checks []Check) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		results := make(map[string]string, len(checks))
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, c := range checks {
			wg.Go(func() {
				msg := "ok"
				if err := c.Fn(ctx); err != nil {
					msg = err.Error()
				}
				mu.Lock()
				results[c.Name] = msg
				mu.Unlock()
			})
		}
		wg.Wait()
		code, status := http.StatusOK, "ready"
		for _, m := range results {
			if m != "ok" {
				code, status = http.StatusServiceUnavailable, "not ready"
			}
		}
		writeJSON(w, code, map[string]any{"status": status, "checks": results})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
