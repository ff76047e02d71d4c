// Package memlimit tells the Go garbage collector how much memory ordersd
// may use, when the operator has not: 90% of the container's memory limit
// (cgroup v2 memory.max, or v1 memory.limit_in_bytes). Without a limit on
// either, the GC runs by GOGC alone, as it always did.
//
// Why: a process near its container's limit gets killed, not slowed down.
// With a soft limit the GC works harder as the heap approaches it, which
// turns a would-be out-of-memory kill into a few percent more GC CPU. The
// 10% left over is for what the Go runtime does not count (thread stacks
// outside the heap, the binary's own pages).
package memlimit

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// Fraction is the share of the container's memory limit given to the Go
// runtime.
const Fraction = 0.9

// cgroupFiles are where the container's memory limit is read from: cgroup
// v2 first, then v1.
var cgroupFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// unlimitedV1 is at or above what cgroup v1 reports for "no limit" (the
// largest page-aligned int64).
const unlimitedV1 = 1 << 62

// Container returns the memory limit of the container this process runs
// in, read from files (cgroup's own when nil), and false when there is
// none.
func Container(files []string) (int64, bool) {
	if files == nil {
		files = cgroupFiles
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0, false
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 || n >= unlimitedV1 {
			return 0, false
		}
		return n, true
	}
	return 0, false
}

// Apply sets the GC's memory limit to Fraction of the container's limit
// unless GOMEMLIMIT is set (the runtime already applied it), and logs what
// the limit is and where it came from. It returns the limit in effect
// (math.MaxInt64: none).
func Apply(log *slog.Logger, getenv func(string) string, files []string) int64 {
	if v := getenv("GOMEMLIMIT"); v != "" {
		limit := debug.SetMemoryLimit(-1)
		log.Info("memory limit from GOMEMLIMIT", "limit", v, "bytes", limit)
		return limit
	}
	n, ok := Container(files)
	if !ok {
		log.Info("no memory limit: no GOMEMLIMIT and no container memory limit; the GC runs by GOGC")
		return debug.SetMemoryLimit(-1)
	}
	limit := int64(float64(n) * Fraction)
	debug.SetMemoryLimit(limit)
	log.Info(fmt.Sprintf("memory limit %d%% of the container's", int(Fraction*100)), "bytes", limit, "container_bytes", n)
	return limit
}
