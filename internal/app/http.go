package app

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orderstream/orderstream/internal/auth"
	"github.com/orderstream/orderstream/internal/httpapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Check is one readiness condition; a nil error means ready.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
	// Advisory checks are reported (under "info" in /readyz) but never
	// make the process unready: they describe a degraded dependency the
	// process can still work around.
	Advisory bool
}

// readyTimeout bounds one evaluation of the checks.
const readyTimeout = time.Second

// evaluation is the outcome of one run of the checks.
type evaluation struct {
	checks map[string]string // required checks: "ok" or why not
	info   map[string]string // advisory checks: "ok" or why not
}

// ready reports whether every required check passed.
func (e evaluation) ready() bool {
	for _, m := range e.checks {
		if m != "ok" {
			return false
		}
	}
	return true
}

// ok reports whether the named required checks all passed; a name that was
// not evaluated counts as passed.
func (e evaluation) ok(names ...string) bool {
	for _, n := range names {
		if m, found := e.checks[n]; found && m != "ok" {
			return false
		}
	}
	return true
}

// evaluate runs every check concurrently, bounded by readyTimeout.
func evaluate(ctx context.Context, checks []Check) evaluation {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	e := evaluation{checks: map[string]string{}, info: map[string]string{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range checks {
		wg.Go(func() {
			msg := "ok"
			if err := c.Fn(ctx); err != nil {
				msg = err.Error()
			}
			mu.Lock()
			if c.Advisory {
				e.info[c.Name] = msg
			} else {
				e.checks[c.Name] = msg
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return e
}

// healthz answers 200 while the process runs: liveness must not depend on
// NATS, or an orchestrator would restart every replica during a NATS outage
// that restarts cannot fix.
func healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
}

// readiness keeps the outcome of the last evaluation of the checks. A
// background loop refreshes it (every healthInterval) and /readyz answers
// from it at once: a probe never waits on a round trip to NATS, which
// during an outage would take the whole readyTimeout and reach a probe with
// a one-second timeout as a timeout rather than as "not ready".
type readiness struct {
	checks []Check
	last   atomic.Pointer[evaluation]
}

// refresh runs the checks and keeps their outcome.
func (r *readiness) refresh(ctx context.Context) evaluation {
	e := evaluate(ctx, r.checks)
	r.last.Store(&e)
	return e
}

// handler answers from the last evaluation: 200 {"status":"ready",
// "checks":{…}} or 503 {"status":"not ready",…} with each failed required
// check's text under its name, and 503 {"status":"starting"} before the
// first one. Advisory checks appear under "info" (when there are any) and
// never change the status.
func (r *readiness) handler() http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		e := r.last.Load()
		if e == nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "starting"})
			return
		}
		code, status := http.StatusOK, "ready"
		if !e.ready() {
			code, status = http.StatusServiceUnavailable, "not ready"
		}
		body := map[string]any{"status": status, "checks": e.checks}
		if len(e.info) > 0 {
			body["info"] = e.info
		}
		writeJSON(w, code, body)
	}
}

// requireClientCert answers 401 to a request that did not present a client
// certificate verified against TLS_CLIENT_CA. The HTTP listener only asks
// for one (so probes and scrapes need none), and the gateway calls gRPC with
// this process's own certificate, so without this check REST would be open
// to any TLS client while gRPC demands mTLS.
func requireClientCert(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			// As every other REST 401: the API's error shape (a stream
			// route's line), with the challenge.
			httpapi.Refuse(w, r, http.StatusUnauthorized, status.Error(codes.Unauthenticated, "a client certificate is required"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// withoutPattern runs next and then clears the request's Pattern, which
// the gateway's own catch-all route set to "/". otelhttp, wrapped around
// this, reads the Pattern of this very request once next returns, and
// would label every REST request with the route "/" and rename its span
// after it; the gateway has already named both after the route template.
func withoutPattern(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r)
		r.Pattern = ""
	})
}

// requireRole answers 401 to a request without a valid bearer token and 403
// to one whose token lacks role, in the shape of every other REST error.
// The token is read by auth.BearerToken, as the gRPC interceptor reads it,
// so a client whose token works on the API works here too.
func requireRole(a *auth.Authenticator, role string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := auth.BearerToken(r.Header.Get("Authorization"))
		p, err := a.Authenticate(token)
		switch {
		case !ok || err != nil:
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeJSON(w, http.StatusUnauthorized, map[string]any{"code": 16, "message": "a bearer token is required", "details": []any{}})
		case !p.Has(role):
			writeJSON(w, http.StatusForbidden, map[string]any{"code": 7, "message": "the token lacks the " + role + " role", "details": []any{}})
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
