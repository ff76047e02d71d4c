package deploy_test

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/orderstream/orderstream/internal/config"
)

// parseDockerfile parses the Dockerfile into stages with BuildKit's parser,
// failing on anything BuildKit's linter warns about.
func parseDockerfile(t *testing.T) []instructions.Stage {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := parser.Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	for _, w := range res.Warnings {
		t.Errorf("Dockerfile: %s", w.Short)
	}
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []parser.Range) {
		line := 0
		if len(loc) > 0 {
			line = loc[0].Start.Line
		}
		t.Errorf("Dockerfile:%d: %s: %s", line, rule, msg)
	}})
	stages, _, err := instructions.Parse(res.AST, lint)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	return stages
}

// commands returns a stage's commands of type T.
func commands[T instructions.Command](s instructions.Stage) []T {
	var out []T
	for _, c := range s.Commands {
		if tc, ok := c.(T); ok {
			out = append(out, tc)
		}
	}
	return out
}

func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t)
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a build stage and a runtime stage", len(stages))
	}
	final := stages[len(stages)-1]
	builders := stages[:len(stages)-1]

	t.Run("final stage is distroless or scratch", func(t *testing.T) {
		if final.BaseName != "scratch" && !strings.HasPrefix(final.BaseName, "gcr.io/distroless/static") {
			t.Errorf("final stage FROM %s, want gcr.io/distroless/static… or scratch", final.BaseName)
		}
		if len(commands[*instructions.RunCommand](final)) > 0 {
			t.Error("the final stage runs commands; it has no shell")
		}
	})

	t.Run("non-root user", func(t *testing.T) {
		users := commands[*instructions.UserCommand](final)
		if len(users) == 0 {
			t.Fatal("no USER in the final stage")
		}
		user, group, _ := strings.Cut(users[len(users)-1].User, ":")
		uid, err := strconv.Atoi(user)
		if err != nil || uid == 0 {
			t.Errorf("USER %s: want a numeric non-zero uid, so runtimes can verify it is not root", users[len(users)-1].User)
		}
		if group == "0" || group == "root" {
			t.Errorf("USER %s: root group", users[len(users)-1].User)
		}
	})

	t.Run("static build with cache mounts", func(t *testing.T) {
		var found bool
		for _, s := range builders {
			for _, run := range commands[*instructions.RunCommand](s) {
				line := strings.Join(run.CmdLine, " ")
				if !strings.Contains(line, "go build") {
					continue
				}
				found = true
				for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-ldflags='-s -w'", "./cmd/ordersd", "./cmd/ordersctl"} {
					if !strings.Contains(line, want) {
						t.Errorf("go build %q lacks %s", line, want)
					}
				}
				// Mount options are evaluated on expansion; nothing
				// here needs a build argument.
				if err := run.Expand(func(word string) (string, error) { return word, nil }); err != nil {
					t.Fatal(err)
				}
				var caches []string
				for _, m := range instructions.GetMounts(run) {
					if m.Type == instructions.MountTypeCache {
						caches = append(caches, m.Target)
					}
				}
				for _, want := range []string{"/go/pkg/mod", "/root/.cache/go-build"} {
					if !slices.Contains(caches, want) {
						t.Errorf("go build without a cache mount at %s (has %v)", want, caches)
					}
				}
			}
			if img, tag, ok := strings.Cut(s.BaseName, ":"); ok && img == "golang" {
				goVersion, _ := goMod(t)
				tag, _, _ = strings.Cut(tag, "-") // 1.26-bookworm
				// The image builds with GOTOOLCHAIN=local: an older
				// patch release than go.mod's refuses it.
				if tag != goVersion {
					t.Errorf("builder %s is not Go %s, go.mod's version", s.BaseName, goVersion)
				}
			}
		}
		if !found {
			t.Error("no go build in a build stage")
		}
	})

	t.Run("binaries copied from the build stage", func(t *testing.T) {
		names := map[string]bool{}
		for _, s := range builders {
			names[s.Name] = true
		}
		var got []string
		for _, cp := range commands[*instructions.CopyCommand](final) {
			if !names[cp.From] {
				continue
			}
			for _, src := range cp.SourcePaths {
				got = append(got, filepath.Join(cp.DestPath, filepath.Base(src)))
			}
		}
		for _, want := range []string{"/ordersd", "/ordersctl"} {
			if !slices.Contains(got, want) {
				t.Errorf("%s not copied from a build stage (copied %v)", want, got)
			}
		}
	})

	t.Run("environment validates with the documented run commands", func(t *testing.T) {
		checkImageEnvironment(t, final)
	})

	t.Run("entrypoint, health check and ports", func(t *testing.T) {
		eps := commands[*instructions.EntrypointCommand](final)
		if len(eps) == 0 || eps[len(eps)-1].PrependShell || !slices.Equal(eps[len(eps)-1].CmdLine, []string{"/ordersd"}) {
			t.Errorf("ENTRYPOINT %v, want exec form [\"/ordersd\"]", eps)
		}
		hcs := commands[*instructions.HealthCheckCommand](final)
		if len(hcs) == 0 {
			t.Fatal("no HEALTHCHECK")
		}
		if got := strings.Join(hcs[len(hcs)-1].Health.Test, " "); got != healthcheck {
			t.Errorf("HEALTHCHECK %q, want %q (as compose.yaml)", got, healthcheck)
		}
		var ports []string
		for _, e := range commands[*instructions.ExposeCommand](final) {
			ports = append(ports, e.Ports...)
		}
		envs := imageEnv(final)
		for variable, port := range map[string]string{"GRPC_ADDR": "50051", "HTTP_ADDR": "8080"} {
			if !slices.Contains(ports, port) {
				t.Errorf("EXPOSE %v lacks %s", ports, port)
			}
			if want := "0.0.0.0:" + port; envs[variable] != want {
				t.Errorf("ENV %s=%q, want %q: the default loopback address is unreachable from outside a container", variable, envs[variable], want)
			}
		}
	})
}

// imageEnv returns the environment the final stage's ENV instructions set.
func imageEnv(final instructions.Stage) map[string]string {
	envs := map[string]string{}
	for _, e := range commands[*instructions.EnvCommand](final) {
		for _, kv := range e.Env {
			envs[kv.Key] = kv.Value
		}
	}
	return envs
}

// documentedRuns returns every `docker run` command line in the Dockerfile's
// comments and in README.md, with where it was found.
func documentedRuns(t *testing.T) map[string]string {
	t.Helper()
	runs := map[string]string{}
	for _, file := range []string{"Dockerfile", "README.md"} {
		b, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(strings.TrimPrefix(line, "#"))
			if strings.HasPrefix(line, "docker run ") {
				runs[file+":"+strconv.Itoa(i+1)] = line
			}
		}
	}
	return runs
}

// runEnv returns the variables a docker run command line sets with -e or
// --env (NAME=value; a bare NAME takes the caller's value, which a
// documented command must not rely on).
func runEnv(t *testing.T, line string) map[string]string {
	t.Helper()
	args := strings.Fields(line)
	vars := map[string]string{}
	for i := 0; i < len(args); i++ {
		var kv string
		switch a := args[i]; {
		case a == "-e" || a == "--env":
			if i+1 >= len(args) {
				t.Fatalf("%q: %s without a value", line, a)
			}
			i++
			kv = args[i]
		case strings.HasPrefix(a, "--env="):
			kv = strings.TrimPrefix(a, "--env=")
		case strings.HasPrefix(a, "-e") && len(a) > 2:
			kv = strings.TrimPrefix(a[2:], "=")
		default:
			continue
		}
		if strings.ContainsAny(kv, `"'$`) {
			t.Fatalf("%q: quoting or expansion in %s; keep documented variables literal", line, kv)
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Errorf("%q: -e %s takes the caller's value", line, k)
		}
		vars[k] = v
	}
	return vars
}

// checkImageEnvironment: the image's environment is what ordersd starts with in a container (and
// what `ordersd healthcheck`, run by HEALTHCHECK, reads): on its own it must
// refuse to serve every interface without authentication, and each
// documented `docker run` must add what makes it start.
func checkImageEnvironment(t *testing.T, final instructions.Stage) {
	envs := imageEnv(final)
	if envs["ALLOW_INSECURE"] != "" {
		t.Errorf("ENV ALLOW_INSECURE=%s: the image must not open itself; the run command says so", envs["ALLOW_INSECURE"])
	}
	if _, err := config.FromMap(envs); err == nil || !strings.Contains(err.Error(), "GRPC_ADDR") {
		t.Errorf("the image's ENV alone: %v, want the refusal naming GRPC_ADDR", err)
	}
	runs := documentedRuns(t)
	if len(runs) == 0 {
		t.Fatal("no documented docker run command")
	}
	for where, line := range runs {
		all := maps.Clone(envs)
		maps.Copy(all, runEnv(t, line))
		cfg, err := config.FromMap(all)
		if err != nil {
			t.Errorf("%s: %q: ordersd refuses the environment: %v", where, line, err)
			continue
		}
		checkRunKeepsData(t, where, line, cfg.DataDir, cfg.ShutdownTimeout+15*time.Second)
	}
}

// checkRunKeepsData: a documented docker run mounts a volume at the data
// directory, which --rm would otherwise delete with the container (the
// whole event log, with embedded NATS), and gives a stop at least stop
// before Docker kills the process.
func checkRunKeepsData(t *testing.T, where, line, dataDir string, stop time.Duration) {
	t.Helper()
	args := strings.Fields(line)
	mounted, waits := false, time.Duration(0)
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-v", "--volume":
			parts := strings.Split(args[i+1], ":")
			mounted = mounted || len(parts) >= 2 && parts[1] == dataDir && (len(parts) == 2 || parts[2] != "ro")
		case "--stop-timeout":
			s, err := strconv.Atoi(args[i+1])
			if err != nil {
				t.Errorf("%s: --stop-timeout %q", where, args[i+1])
			}
			waits = time.Duration(s) * time.Second
		}
	}
	if !mounted {
		t.Errorf("%s: %q mounts no writable volume at %s: the log goes with the container", where, line, dataDir)
	}
	if waits < stop {
		t.Errorf("%s: %q gives a stop %v before it kills, want at least %v", where, line, waits, stop)
	}
}

// The build context keeps local state and VCS data out, and everything the
// build needs in.
func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, strings.TrimPrefix(line, "/"))
		}
	}
	for _, want := range []string{".git", "**/data"} {
		if !slices.Contains(patterns, want) {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
	for _, needed := range []string{"go.mod", "go.sum", "cmd/ordersd/main.go", "internal/app/app.go"} {
		for _, p := range patterns {
			if ok, _ := filepath.Match(p, needed); ok || strings.HasPrefix(needed, p+"/") {
				t.Errorf(".dockerignore pattern %q excludes %s", p, needed)
			}
		}
	}
}
