package topology_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/deploy"
)

// A service, variable or health check added to compose.yaml that the
// topology run would not understand fails the plan, naming it, before
// anything starts.
func TestComposeDriftFailsThePlan(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(), "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(filepath.Join(repoRoot(), "deploy", "nats", "cluster.conf"))
	if err != nil {
		t.Fatal(err)
	}
	// edit replaces old, which must occur in compose.yaml, with new.
	edit := func(old, new string) func(string) string {
		return func(s string) string {
			if !strings.Contains(s, old) {
				t.Fatalf("compose.yaml no longer contains %q", old)
			}
			return strings.Replace(s, old, new, 1)
		}
	}
	for _, c := range []struct {
		name, want string
		edit       func(string) string
	}{
		{"unchanged", "", func(s string) string { return s }},
		{"variable", "CACHE_SIZE", edit("\n  ALLOW_INSECURE: \"true\"\n", "\n  ALLOW_INSECURE: \"true\"\n  CACHE_SIZE: \"64\"\n")},
		{"service", "redis", edit("\nvolumes:\n", "\n  cache:\n    image: redis:7\n\nvolumes:\n")},
		{"upstream", "QUERY_ADDR", edit("QUERY_ADDR: query:50051", "QUERY_ADDR: query:9999")},
		{"health check", "curl", edit(`["CMD", "/ordersd", "healthcheck"]`, `["CMD", "curl", "-f", "http://127.0.0.1:8080/healthz"]`)},
		{"nats argument", "--jetstream", edit(`"--server_name", "nats-2"]`, `"--server_name", "nats-2", "--jetstream", "true"]`)},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "deploy", "nats"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "deploy", "nats", "cluster.conf"), conf, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(c.edit(string(b))), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			p, err := deploy.LoadCompose(ctx, dir)
			if err != nil {
				t.Fatal(err)
			}
			_, err = plan(p, t.TempDir())
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("compose.yaml as it is: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("plan: %v, want an error naming %s", err, c.want)
			}
		})
	}
}
