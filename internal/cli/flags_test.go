package cli_test

import (
	"testing"

	"github.com/orderstream/orderstream/internal/cli"
	"google.golang.org/grpc"
)

// What gRPC metadata cannot carry, and a timeout that leaves no time for
// any call, are usage errors, told before any call: not an internal error
// (exit 5) or "unavailable" (exit 4) from every call.
func TestFlagsNoCallCanUseAreUsageErrors(t *testing.T) {
	addr := serve(t, func(*grpc.Server) {})
	for _, args := range [][]string{
		{"--actor", "José"},
		{"--token", "tökén"},
		{"--timeout", "0s"},
		{"--timeout", "-1s"},
	} {
		r := run(t, addr, append(args, "orders", "get", "any-order")...)
		if r.code != cli.ExitUsage {
			t.Errorf("%v: exit %d, want %d (usage):\n%s%s", args, r.code, cli.ExitUsage, r.stdout, r.stderr)
		}
	}
}
