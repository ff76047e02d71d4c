package deploy_test

import (
	"context"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/orderstream/orderstream/deploy"
	"github.com/orderstream/orderstream/internal/config"
)

// root is the repository root, seen from this package's directory.
const root = ".."

// The cluster as compose.yaml must declare it.
var (
	natsNodes = []string{"nats-1", "nats-2", "nats-3"}
	// roles maps each ordersd role to the number of processes running it.
	roles = map[string]int{"command": 2, "query": 2, "audit": 1, "payments": 2, "gateway": 1, "console": 1}
)

const (
	natsConfig     = "/etc/nats/cluster.conf"
	natsConfigFile = "deploy/nats/cluster.conf"
	healthcheck    = "CMD /ordersd healthcheck"
	readyCheck     = "CMD /ordersd healthcheck --ready"
)

func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := deploy.LoadCompose(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func natsServerOptions(t *testing.T) *server.Options {
	t.Helper()
	opts, err := server.ProcessConfigFile(filepath.Join(root, natsConfigFile))
	if err != nil {
		t.Fatalf("%s: %v", natsConfigFile, err)
	}
	return opts
}

// env returns a service's environment as plain strings.
func env(s types.ServiceConfig) map[string]string { return deploy.Environment(s) }

// ordersdServices returns the services that run ordersd, by role; a
// service running several roles is listed under each.
func ordersdServices(p *types.Project) map[string][]types.ServiceConfig {
	out := map[string][]types.ServiceConfig{}
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		if r, ok := env(s)["ROLES"]; ok {
			for _, role := range strings.Split(r, ",") {
				out[role] = append(out[role], s)
			}
		}
	}
	return out
}

func replicas(s types.ServiceConfig) int { return deploy.Replicas(s) }

// goMod returns the go directive's version and the required modules'
// versions from the repository's go.mod.
func goMod(t *testing.T) (goVersion string, require map[string]string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	require = map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line, _, _ = strings.Cut(line, "//")
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "go":
			goVersion = f[1]
		case len(f) == 3 && f[0] == "require":
			require[f[1]] = f[2]
		case len(f) == 2 && strings.Contains(f[0], ".") && strings.HasPrefix(f[1], "v"):
			require[f[0]] = f[1]
		}
	}
	if goVersion == "" {
		t.Fatal("go.mod: no go directive")
	}
	return goVersion, require
}

func goModVersion(t *testing.T, path string) string {
	t.Helper()
	_, require := goMod(t)
	v, ok := require[path]
	if !ok {
		t.Fatalf("go.mod does not require %s", path)
	}
	return v
}

func TestNATSConfigFile(t *testing.T) {
	opts := natsServerOptions(t)
	if !opts.JetStream {
		t.Error("JetStream is not enabled")
	}
	if opts.StoreDir != "/data" {
		t.Errorf("store_dir %q, want /data (the volume compose mounts)", opts.StoreDir)
	}
	// All three nodes run on compose's one host: a power loss reaches
	// every replica, and only an fsync per write keeps what was
	// acknowledged.
	if !opts.SyncAlways {
		t.Errorf("sync_interval %v, want always: the replicas share one host", opts.SyncInterval)
	}
	if opts.Port != 4222 || opts.HTTPPort != 8222 || opts.Cluster.Port != 6222 {
		t.Errorf("ports: client %d, monitoring %d, cluster %d; want 4222, 8222, 6222", opts.Port, opts.HTTPPort, opts.Cluster.Port)
	}
	if opts.Cluster.Name == "" {
		t.Error("cluster has no name")
	}
	var hosts []string
	for _, r := range opts.Routes {
		if r.Port() != strconv.Itoa(opts.Cluster.Port) {
			t.Errorf("route %s: port is not the cluster port %d", r, opts.Cluster.Port)
		}
		hosts = append(hosts, r.Hostname())
	}
	slices.Sort(hosts)
	if !slices.Equal(hosts, natsNodes) {
		t.Errorf("routes to %v, want every node %v", hosts, natsNodes)
	}
}

func TestComposeNATSCluster(t *testing.T) {
	p := loadCompose(t)
	opts := natsServerOptions(t)
	serverVersion := strings.TrimPrefix(goModVersion(t, "github.com/nats-io/nats-server/v2"), "v")
	names := map[string]bool{}
	for _, name := range natsNodes {
		s, ok := p.Services[name]
		if !ok {
			t.Errorf("no service %s", name)
			continue
		}
		image, tag, _ := strings.Cut(s.Image, ":")
		if image != "nats" || (tag != serverVersion && !strings.HasPrefix(tag, serverVersion+"-")) {
			t.Errorf("%s: image %s, want nats:%s (the nats-server version the tests embed)", name, s.Image, serverVersion)
		}
		cmd := strings.Join(s.Command, " ")
		if !strings.Contains(cmd, "--config "+natsConfig) {
			t.Errorf("%s: command %q does not load %s", name, cmd, natsConfig)
		}
		args := slices.Clone([]string(s.Command))
		if i := slices.Index(args, "--server_name"); i < 0 || i+1 >= len(args) || args[i+1] != name {
			t.Errorf("%s: command %q does not name the server %s", name, cmd, name)
		} else {
			names[args[i+1]] = true
		}

		var conf, store bool
		for _, v := range s.Volumes {
			switch v.Target {
			case natsConfig:
				conf = v.Type == types.VolumeTypeBind && v.ReadOnly &&
					v.Source == filepath.Join(p.WorkingDir, natsConfigFile)
			case opts.StoreDir:
				// File storage on a named volume, one per node.
				store = v.Type == types.VolumeTypeVolume && v.Source == name+"-data"
				if _, ok := p.Volumes[v.Source]; !ok {
					t.Errorf("%s: volume %s is not declared", name, v.Source)
				}
			}
		}
		if !conf {
			t.Errorf("%s: %s is not mounted read-only at %s", name, natsConfigFile, natsConfig)
		}
		if !store {
			t.Errorf("%s: no named volume %s-data at the JetStream store %s", name, name, opts.StoreDir)
		}

		hc := s.HealthCheck
		if hc == nil || hc.Disable || len(hc.Test) == 0 {
			t.Errorf("%s: no health check", name)
			continue
		}
		test := strings.Join(hc.Test, " ")
		want := "127.0.0.1:" + strconv.Itoa(opts.HTTPPort) + "/healthz?js-enabled-only=true"
		if hc.Test[0] != "CMD" || !strings.Contains(test, want) {
			t.Errorf("%s: health check %q does not ask %s", name, test, want)
		}
	}
	if len(names) != len(natsNodes) {
		t.Errorf("server names %v are not distinct", names)
	}
}

func TestComposeJaeger(t *testing.T) {
	p := loadCompose(t)
	s, ok := p.Services["jaeger"]
	if !ok {
		t.Fatal("no jaeger service")
	}
	image, tag, _ := strings.Cut(s.Image, ":")
	if image != "jaegertracing/jaeger" || !strings.HasPrefix(tag, "2.") {
		t.Errorf("image %s, want jaegertracing/jaeger:2.x (all-in-one v2)", s.Image)
	}
	for _, port := range []string{"4317", "4318"} {
		if !slices.Contains([]string(s.Expose), port) {
			t.Errorf("OTLP port %s not exposed", port)
		}
	}
}

func TestComposeRoles(t *testing.T) {
	p := loadCompose(t)
	byRole := ordersdServices(p)
	for role, want := range roles {
		n := 0
		for _, s := range byRole[role] {
			n += replicas(s)
		}
		if n != want {
			t.Errorf("role %s: %d processes, want %d", role, n, want)
		}
	}
	for role := range byRole {
		if _, ok := roles[role]; !ok {
			t.Errorf("unknown role %q", role)
		}
	}
}

func TestComposeOrdersdServices(t *testing.T) {
	p := loadCompose(t)
	opts := natsServerOptions(t)
	stages := parseDockerfile(t)
	imageEnvironment := imageEnv(stages[len(stages)-1])
	var image string
	byRole := ordersdServices(p)
	awaited := map[string]bool{} // the services another waits to be healthy
	for _, s := range p.Services {
		for name, d := range s.DependsOn {
			awaited[name] = awaited[name] || d.Condition == types.ServiceConditionHealthy
		}
	}
	for _, role := range slices.Sorted(maps.Keys(byRole)) {
		for _, s := range byRole[role] {
			t.Run(s.Name, func(t *testing.T) {
				e := env(s)
				if image == "" {
					image = s.Image
				}
				if s.Image != image {
					t.Errorf("image %s, want the one image %s", s.Image, image)
				}
				if s.Build == nil || s.Build.Context != p.WorkingDir {
					t.Errorf("build %+v: not the repository's Dockerfile", s.Build)
				}

				// Started once NATS is healthy.
				for _, n := range natsNodes {
					if d, ok := s.DependsOn[n]; !ok || d.Condition != types.ServiceConditionHealthy {
						t.Errorf("depends_on %s: %+v, want condition service_healthy", n, d)
					}
				}
				// Healthy means ready for a service others wait on
				// (depends_on: service_healthy): alive, a command
				// node may not have reached NATS, a query node may be
				// catching up.
				want := healthcheck
				if awaited[s.Name] {
					want = readyCheck
				}
				if hc := s.HealthCheck; hc == nil || hc.Disable || strings.Join(hc.Test, " ") != want {
					t.Errorf("health check %+v, want %q", hc, want)
				}

				// NATS_URL names every node at its client port.
				var hosts []string
				for _, u := range strings.Split(e["NATS_URL"], ",") {
					pu, err := url.Parse(u)
					if err != nil || pu.Scheme != "nats" || pu.Port() != strconv.Itoa(opts.Port) {
						t.Errorf("NATS_URL entry %q: want nats://NODE:%d", u, opts.Port)
						continue
					}
					hosts = append(hosts, pu.Hostname())
				}
				slices.Sort(hosts)
				if !slices.Equal(hosts, natsNodes) {
					t.Errorf("NATS_URL %q, want all of %v", e["NATS_URL"], natsNodes)
				}
				if r, _ := strconv.Atoi(e["STREAM_REPLICAS"]); r != 3 || r > len(natsNodes) {
					t.Errorf("STREAM_REPLICAS %q, want 3", e["STREAM_REPLICAS"])
				}

				for k, want := range map[string]string{
					"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4317",
					"OTEL_SERVICE_NAME":           "ordersd-" + strings.Split(e["ROLES"], ",")[0],
					"GRPC_ADDR":                   "0.0.0.0:50051",
					"HTTP_ADDR":                   "0.0.0.0:8080",
				} {
					if e[k] != want {
						t.Errorf("%s=%q, want %q", k, e[k], want)
					}
				}
				if d, ok := s.DependsOn["jaeger"]; !ok || d.Condition != types.ServiceConditionStarted {
					t.Errorf("depends_on jaeger: %+v, want condition service_started", d)
				}

				// ordersd accepts the environment the container gets,
				// the image's ENV under the service's (config.FromMap
				// validates it), and compose waits for the drain before
				// killing.
				all := maps.Clone(imageEnvironment)
				maps.Copy(all, e)
				cfg, err := config.FromMap(all)
				if err != nil {
					t.Fatalf("ordersd rejects the environment: %v", err)
				}
				if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) < cfg.ShutdownTimeout+config.ShutdownSlack {
					t.Errorf("stop_grace_period %v is shorter than SHUTDOWN_TIMEOUT %s and the slack of a stop (%s)", s.StopGracePeriod, cfg.ShutdownTimeout, config.ShutdownSlack)
				}

				// Only the gateway (with the console beside it) is
				// reachable from outside.
				if role != "gateway" && role != "console" && len(s.Ports) > 0 {
					t.Errorf("publishes ports %+v; only the gateway should", s.Ports)
				}
			})
		}
	}
}

// dataVolume returns the volume mounted at the service's DATA_DIR.
func dataVolume(s types.ServiceConfig) (types.ServiceVolumeConfig, bool) {
	dir := env(s)["DATA_DIR"]
	for _, v := range s.Volumes {
		if v.Target == dir {
			return v, true
		}
	}
	return types.ServiceVolumeConfig{}, false
}

func TestComposeQueryNodesHaveOwnReadModel(t *testing.T) {
	p := loadCompose(t)
	seen := map[string]string{}
	for _, s := range ordersdServices(p)["query"] {
		if replicas(s) != 1 {
			t.Errorf("%s: %d replicas would share one read-model volume", s.Name, replicas(s))
		}
		v, ok := dataVolume(s)
		if !ok || v.Type != types.VolumeTypeVolume {
			t.Errorf("%s: no named volume at DATA_DIR %q", s.Name, env(s)["DATA_DIR"])
			continue
		}
		if _, ok := p.Volumes[v.Source]; !ok {
			t.Errorf("%s: volume %s is not declared", s.Name, v.Source)
		}
		if other, dup := seen[v.Source]; dup {
			t.Errorf("%s and %s share the volume %s", s.Name, other, v.Source)
		}
		seen[v.Source] = s.Name
	}
}

func TestComposeGateway(t *testing.T) {
	p := loadCompose(t)
	gws := ordersdServices(p)["gateway"]
	if len(gws) != 1 {
		t.Fatalf("%d gateway services", len(gws))
	}
	gw := gws[0]
	e := env(gw)

	var published bool
	for _, port := range gw.Ports {
		if port.Target == 8080 && port.Published == "8080" {
			published = true
		}
	}
	if !published {
		t.Errorf("gateway ports %+v: 8080 not published", gw.Ports)
	}

	// Each backend address reaches every process of its role, and only
	// those, on their gRPC port.
	hosts := deploy.Hosts(p)
	byRole := ordersdServices(p)
	for variable, role := range map[string]string{"COMMAND_ADDR": "command", "QUERY_ADDR": "query", "AUDIT_ADDR": "audit", "PAYMENTS_ADDR": "payments"} {
		host, port, err := net.SplitHostPort(e[variable])
		if err != nil {
			t.Errorf("%s=%q: %v", variable, e[variable], err)
			continue
		}
		var targets []string
		for _, s := range hosts[host] {
			targets = append(targets, s.Name)
			if _, grpcPort, _ := net.SplitHostPort(env(s)["GRPC_ADDR"]); grpcPort != port {
				t.Errorf("%s=%s: %s serves gRPC on port %s", variable, e[variable], s.Name, grpcPort)
			}
		}
		var want []string
		for _, s := range byRole[role] {
			want = append(want, s.Name)
		}
		slices.Sort(targets)
		slices.Sort(want)
		if len(want) == 0 || !slices.Equal(targets, want) {
			t.Errorf("%s=%s reaches %v, want the %s services %v", variable, e[variable], targets, role, want)
		}
		for _, name := range want {
			if d, ok := gw.DependsOn[name]; !ok || d.Condition != types.ServiceConditionHealthy {
				t.Errorf("gateway depends_on %s: %+v, want condition service_healthy", name, d)
			}
		}
	}
}

// Bind mounts come from the repository, never from a path of one machine.
func TestComposeBindMountsInRepository(t *testing.T) {
	p := loadCompose(t)
	for _, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			rel, err := filepath.Rel(p.WorkingDir, v.Source)
			if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
				t.Errorf("%s: bind mount %s is outside the repository", s.Name, v.Source)
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s: bind mount: %v", s.Name, err)
			}
		}
	}
}

// Every role that calls another role's gRPC services reaches it: each
// *_ADDR a service sets names services that run that role (all of them, on
// their gRPC port), and each role a service runs has the roles it calls in
// the same process or at a configured address. internal/config says which
// roles call which, so a new dependency is checked here without editing
// this test.
func TestComposeUpstreams(t *testing.T) {
	p := loadCompose(t)
	hosts := deploy.Hosts(p)
	byRole := map[string][]string{} // role → names of the services running it
	for _, s := range p.Services {
		e := env(s)
		if _, ok := e["ROLES"]; !ok {
			if s.Build != nil {
				t.Errorf("%s: runs the ordersd image without ROLES", s.Name)
			}
			continue
		}
		for _, r := range strings.Split(e["ROLES"], ",") {
			byRole[r] = append(byRole[r], s.Name)
		}
	}
	for _, name := range p.ServiceNames() {
		s := p.Services[name]
		e := env(s)
		if _, ok := e["ROLES"]; !ok {
			continue
		}
		runs := strings.Split(e["ROLES"], ",")
		t.Run(name, func(t *testing.T) {
			for _, variable := range slices.Sorted(maps.Keys(e)) {
				if !strings.HasSuffix(variable, "_ADDR") || variable == "GRPC_ADDR" || variable == "HTTP_ADDR" {
					continue
				}
				var role string
				for _, r := range config.AllRoles {
					if config.AddrVariable(r) == variable {
						role = r
					}
				}
				if role == "" {
					t.Errorf("%s: not an upstream address ordersd reads", variable)
					continue
				}
				host, port, err := net.SplitHostPort(e[variable])
				if err != nil {
					t.Errorf("%s=%q: %v", variable, e[variable], err)
					continue
				}
				targets := hosts[host]
				if len(targets) == 0 {
					t.Errorf("%s=%s: no service or alias %s", variable, e[variable], host)
					continue
				}
				var reached []string
				for _, target := range targets {
					reached = append(reached, target.Name)
					te := env(target)
					if !slices.Contains(strings.Split(te["ROLES"], ","), role) {
						t.Errorf("%s=%s reaches %s, which does not run the %s role (ROLES=%q)", variable, e[variable], target.Name, role, te["ROLES"])
					}
					if _, grpcPort, _ := net.SplitHostPort(te["GRPC_ADDR"]); grpcPort != port {
						t.Errorf("%s=%s: %s serves gRPC on port %q", variable, e[variable], target.Name, grpcPort)
					}
					if d, ok := s.DependsOn[target.Name]; !ok || d.Condition != types.ServiceConditionHealthy {
						t.Errorf("depends_on %s: %+v, want condition service_healthy (it serves %s)", target.Name, d, variable)
					}
				}
				slices.Sort(reached)
				want := slices.Sorted(slices.Values(byRole[role]))
				if !slices.Equal(reached, want) {
					t.Errorf("%s=%s reaches %v, want every %s service %v", variable, e[variable], reached, role, want)
				}
			}
			for _, r := range runs {
				for _, up := range config.Needs(r) {
					if !slices.Contains(runs, up) && e[config.AddrVariable(up)] == "" {
						t.Errorf("role %s calls the %s role, which this service does not run, and %s is not set", r, up, config.AddrVariable(up))
					}
				}
			}
		})
	}
}

// Nothing is published beyond this machine: the services run with
// ALLOW_INSECURE, so a port on every interface would open an
// unauthenticated API to the network.
func TestComposePublishesOnLoopbackOnly(t *testing.T) {
	p := loadCompose(t)
	n := 0
	for _, name := range p.ServiceNames() {
		for _, port := range p.Services[name].Ports {
			n++
			if port.Published == "" {
				t.Errorf("%s: port %d published on an ephemeral host port", name, port.Target)
			}
			if port.HostIP != "127.0.0.1" {
				t.Errorf("%s: port %s:%d binds %q, want 127.0.0.1", name, port.Published, port.Target, port.HostIP)
			}
		}
	}
	if n == 0 {
		t.Fatal("no published ports")
	}
}

// docRef matches a repository Markdown file named in a comment.
var docRef = regexp.MustCompile(`[A-Za-z0-9_./-]+\.md\b`)

// The deployment files point to documents that exist.
func TestDeployDocumentReferences(t *testing.T) {
	for _, f := range []string{"compose.yaml", natsConfigFile, "Dockerfile"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, ref := range docRef.FindAllString(string(b), -1) {
			if _, err := os.Stat(filepath.Join(root, ref)); err != nil {
				t.Errorf("%s refers to %s: %v", f, ref, err)
			}
		}
	}
}
