package memlimit

import (
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

func write(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "limit")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestContainer(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none")
	for _, c := range []struct {
		files []string
		want  int64
		ok    bool
	}{
		{[]string{write(t, "1073741824\n")}, 1 << 30, true},
		{[]string{write(t, "max\n")}, 0, false},
		{[]string{write(t, "9223372036854771712\n")}, 0, false}, // cgroup v1's "unlimited"
		{[]string{missing, write(t, "536870912")}, 512 << 20, true},
		{[]string{missing}, 0, false},
		{[]string{write(t, "garbage")}, 0, false},
	} {
		if got, ok := Container(c.files); got != c.want || ok != c.ok {
			t.Errorf("Container(%v) = %d, %v; want %d, %v", c.files, got, ok, c.want, c.ok)
		}
	}
}

// Apply takes 90% of a container limit, leaves GOMEMLIMIT to the runtime,
// and sets nothing without either.
func TestApply(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	noEnv := func(string) string { return "" }

	if got := Apply(log, noEnv, []string{write(t, "1000000000")}); got != 900000000 || debug.SetMemoryLimit(-1) != 900000000 {
		t.Fatalf("container limit 1e9: limit %d", got)
	}
	debug.SetMemoryLimit(math.MaxInt64)
	if got := Apply(log, noEnv, []string{write(t, "max")}); got != math.MaxInt64 {
		t.Fatalf("no container limit: limit %d, want none", got)
	}
	debug.SetMemoryLimit(123 << 20) // as the runtime would have from GOMEMLIMIT=123MiB
	env := func(k string) string {
		if k == "GOMEMLIMIT" {
			return "123MiB"
		}
		return ""
	}
	if got := Apply(log, env, []string{write(t, "1000000000")}); got != 123<<20 {
		t.Fatalf("GOMEMLIMIT set: limit %d, want it untouched", got)
	}
}
