package cli_test

import "testing"

// Flag values ordersctl cannot use are usage errors (exit 1) at once,
// before any call: an --addr gRPC would fail on at every call (retried as
// UNAVAILABLE for the whole --timeout, then exit 4) or dial elsewhere than
// meant (a host without a port, at 443), and a --max-wait the server would
// refuse or that waits for nothing. Before, each was retried or dropped.
func TestUnusableFlagValuesAreUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--addr", "http://127.0.0.1:50051", "orders", "get", "o-1"},
		{"--addr", "127.0.0.1:50051:1", "orders", "get", "o-1"},
		{"--addr", "localhost", "orders", "get", "o-1"},
		{"--addr", "localhost:5O051", "orders", "get", "o-1"},
		{"--addr", "localhost:0", "orders", "get", "o-1"},
		{"orders", "get", "o-1", "--min-position", "3", "--max-wait", "-5s"},
		{"orders", "get", "o-1", "--max-wait", "5s"},
		{"orders", "list", "--max-wait", "5s"},
	} {
		// An address no server listens on: a call would be retried.
		if r := run(t, "127.0.0.1:1", append([]string{"--timeout", "20s"}, args...)...); r.code != 1 {
			t.Errorf("%v: exit %d, want 1 (usage): %s%s", args, r.code, r.stdout, r.stderr)
		}
	}
	// A port named by its service (http) is one gRPC dials. It was refused.
	for _, addr := range []string{"dns:///127.0.0.1:1", "[::1]:1", "unix:/nonexistent/orders.sock", "127.0.0.1:http"} {
		if r := run(t, addr, "--timeout", "200ms", "orders", "get", "o-1"); r.code == 1 {
			t.Errorf("--addr %s refused as a usage error: %s", addr, r.stderr)
		}
	}
}
