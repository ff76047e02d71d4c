// Package readme_test runs the README's walkthroughs as written, so the
// README cannot drift from what ordersd does.
//
// A walkthrough is a fenced sh block right after a comment
//
//	<!-- readme-test: NAME [VAR=value …] [needs=TOOL] -->
//
// Each runs in bash (errexit, pipefail) against a fresh ordersd of its own,
// started in-process on free loopback ports with the variables named, with
// grpcurl and the nats CLI (pinned in tools.mod), ordersctl and curl on
// PATH. Only addresses
// are rewritten: 127.0.0.1:50051 and localhost:8080 become the test's own
// ports and `go run ./cmd/ordersctl` the ordersctl built once. A comment
// line "# → a … b" after commands says what their output shows: each part
// between the "…" must appear in it, whitespace aside. A block that needs a
// tool this machine lacks (needs=TOOL) is skipped, naming it, and fails
// under CI (CI set).
package readme_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/app/apptest"
)

// root is the repository root, seen from this package's directory.
const root = "../.."

type walkthrough struct {
	name   string
	env    map[string]string
	start  string // the command that starts ordersd with env, as the marker lists it
	needs  []string
	script string
}

var marker = regexp.MustCompile(`(?m)^<!-- readme-test: (.+?) -->\n` + "```sh\n((?s:.*?))```")

func walkthroughs(t *testing.T, readme string) []walkthrough {
	t.Helper()
	var out []walkthrough
	for _, m := range marker.FindAllStringSubmatch(readme, -1) {
		f := strings.Fields(m[1])
		w := walkthrough{name: f[0], env: map[string]string{}, script: m[2]}
		for _, kv := range f[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				t.Fatalf("walkthrough %s: %q is not VAR=value", w.name, kv)
			}
			if k == "needs" {
				w.needs = append(w.needs, v)
				continue
			}
			w.env[k] = v
			w.start += kv + " "
		}
		if w.start != "" {
			w.start += "go run ./cmd/ordersd"
		}
		out = append(out, w)
	}
	return out
}

// build puts grpcurl and the nats CLI (from tools.mod) and ordersctl in a
// directory for
// PATH. GOPROXY=off: a test sends nothing beyond loopback, so the modules
// must be in the module cache already (`make test` and CI download them).
// `go tool -n` names the tool's executable, cached after the first build.
func build(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	gocmd := func(args ...string) []byte {
		cmd := exec.CommandContext(t.Context(), "go", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=readonly")
		out, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
				stderr = ee.Stderr
			}
			t.Fatalf("go %s: %v\n%s(go mod download -modfile=tools.mod fetches what is missing)", strings.Join(args, " "), err, stderr)
		}
		return out
	}
	for _, tool := range []string{"grpcurl", "nats"} {
		bin := strings.TrimSpace(string(gocmd("tool", "-modfile=tools.mod", "-n", tool)))
		if err := os.Symlink(bin, filepath.Join(dir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	gocmd("build", "-o", filepath.Join(dir, "ordersctl"), "./cmd/ordersctl")
	return dir
}

// expectation is an output comment: the parts of "# → a … b".
var expectation = regexp.MustCompile(`(?m)^# → (.*)$`)

const mark = "@@readme-expectation@@"

func TestREADMEWalkthroughs(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	ws := walkthroughs(t, readme)
	names := map[string]bool{}
	for _, w := range ws {
		names[w.name] = true
	}
	for _, want := range []string{"grpcurl", "rest", "ordersctl", "queries", "audit", "payments", "nats"} {
		if !names[want] {
			t.Errorf("no walkthrough %q in README.md", want)
		}
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	bin := build(t)
	ordersctl := filepath.Join(bin, "ordersctl")
	for _, w := range ws {
		t.Run(w.name, func(t *testing.T) {
			// A reader runs the ordersd the walkthrough needs: its
			// settings were only in the marker, which a reader does not
			// see, and the deadlines one hung on the defaults.
			if w.start != "" && !strings.Contains(readme, w.start) {
				t.Errorf("README.md never says how to start ordersd for it: %s", w.start)
			}
			for _, tool := range append([]string{"curl"}, w.needs...) {
				if strings.Contains(w.script, tool+" ") {
					if _, err := os.Stat(filepath.Join(bin, tool)); err == nil {
						continue // built above
					}
					if _, err := exec.LookPath(tool); err != nil {
						// CI has every tool a walkthrough needs: one
						// missing there is a failure, not a skip.
						if os.Getenv("CI") != "" {
							t.Fatalf("%s is not on this machine", tool)
						}
						t.Skipf("%s is not on this machine", tool)
					}
				}
			}
			addrs, _ := apptest.Start(t, w.env)
			grpcAddr, httpAddr := addrs.GRPC, addrs.HTTP
			script := strings.NewReplacer(
				"go run ./cmd/ordersctl", ordersctl,
				"127.0.0.1:50051", grpcAddr,
				"localhost:8080", httpAddr,
				"127.0.0.1:8080", httpAddr,
				"127.0.0.1:4222", addrs.NATS,
			).Replace(w.script)
			var want [][]string
			script = expectation.ReplaceAllStringFunc(script, func(line string) string {
				want = append(want, strings.Split(expectation.FindStringSubmatch(line)[1], "…"))
				return "echo " + mark
			})
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bash, "-e", "-o", "pipefail", "-c", script)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
				"ORDERS_ADDR="+grpcAddr, "NO_COLOR=1")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("walkthrough %s: %v\n--- script\n%s\n--- stdout\n%s\n--- stderr\n%s", w.name, err, script, stdout.String(), stderr.String())
			}
			outputs := strings.Split(stdout.String(), mark+"\n")
			if len(outputs) != len(want)+1 {
				t.Fatalf("%d outputs for %d expectations:\n%s", len(outputs)-1, len(want), stdout.String())
			}
			for i, parts := range want {
				if err := shows(outputs[i], parts); err != nil {
					t.Errorf("expectation %d (# → %s): %v\n--- output\n%s", i+1, strings.Join(parts, "…"), err, outputs[i])
				}
			}
		})
	}
}

// shows checks that each part appears in out, in order, ignoring
// whitespace.
func shows(out string, parts []string) error {
	squeeze := func(s string) string { return strings.Join(strings.Fields(s), "") }
	rest := squeeze(out)
	for _, p := range parts {
		p = squeeze(p)
		i := strings.Index(rest, p)
		if i < 0 {
			return fmt.Errorf("%q not shown (in this order)", p)
		}
		rest = rest[i+len(p):]
	}
	return nil
}
