package topology_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/orderstream/orderstream/deploy"
	"github.com/orderstream/orderstream/internal/config"
	"github.com/orderstream/orderstream/internal/tcpproxy"
	"github.com/orderstream/orderstream/internal/telemetry/otlptest"
)

// What the test knows how to run: a service is one of these kinds, told
// apart by its image, or the test fails.
type kind int

const (
	natsKind    kind = iota + 1 // nats:<version>: nats-server from go.mod
	ordersdKind                 // built from this repository: ordersd
	otlpKind                    // jaegertracing/jaeger: an OTLP/gRPC receiver
)

// ordersdVars says what the test does with each variable an ordersd service
// may set; a variable missing here fails the test, so compose.yaml cannot
// gain a setting the topology run ignores.
var ordersdVars = map[string]func(r *topology, in *instance, v string) (string, error){
	"ROLES":                       keep,
	"ALLOW_INSECURE":              keep,
	"STREAM_REPLICAS":             keep,
	"LOG_LEVEL":                   keep,
	"OTEL_SERVICE_NAME":           keep,
	"OTEL_EXPORTER_OTLP_PROTOCOL": keep,
	// Listen addresses: any free loopback port; the process logs the
	// ones it got and links lead there.
	"GRPC_ADDR": listen,
	"HTTP_ADDR": listen,
	// The volume (or the container's own disk): a directory per instance,
	// kept across restarts.
	"DATA_DIR": func(_ *topology, in *instance, _ string) (string, error) {
		if in == nil {
			return "", errNoInstance
		}
		return in.dir, nil
	},
	"NATS_URL": func(r *topology, in *instance, v string) (string, error) {
		var out []string
		for _, u := range strings.Split(v, ",") {
			m, err := r.linkURL(in, u)
			if err != nil {
				return "", err
			}
			out = append(out, m)
		}
		return strings.Join(out, ","), nil
	},
	"OTEL_EXPORTER_OTLP_ENDPOINT": func(r *topology, in *instance, v string) (string, error) { return r.linkURL(in, v) },
}

func init() {
	// The upstream addresses ordersd reads, whichever roles have one.
	for _, role := range config.AllRoles {
		if v := config.AddrVariable(role); v != "" {
			ordersdVars[v] = func(r *topology, in *instance, v string) (string, error) { return r.linkAddr(in, v) }
		}
	}
}

func keep(_ *topology, _ *instance, v string) (string, error) { return v, nil }

func listen(_ *topology, _ *instance, v string) (string, error) {
	if _, _, err := net.SplitHostPort(v); err != nil {
		return "", err
	}
	return "127.0.0.1:0", nil
}

// topology is compose.yaml's project running as processes on loopback.
// Every connection one service makes to another (a NATS route, a client
// connection, a gRPC upstream, traces) goes through a link of its own: a
// tcpproxy.Proxy from that instance to that host:port, which reaches the
// live instances behind the name, as the compose network's DNS would.
type topology struct {
	t        *testing.T
	project  *types.Project
	bins     binaries
	nats     *server.Options // deploy/nats/cluster.conf as parsed
	otlp     *otlptest.Collector
	otlpAddr string
	services map[string]*service
	hosts    map[string][]types.ServiceConfig
	// refuser is every NATS server's advertised cluster address: servers
	// gossip the addresses of the routes they accept and dial them
	// directly, which would pass by the links.
	refuser net.Listener

	mu    sync.Mutex
	links map[string]*tcpproxy.Proxy // "instance→host:port"
}

type service struct {
	cfg       types.ServiceConfig
	kind      kind
	instances []*instance
	started   chan struct{}
	healthy   chan struct{}
	failed    chan struct{} // closed when the service cannot come up
}

// instance is one container of a service: a process, restarted on the same
// directory after a kill, as compose's restart policy does.
type instance struct {
	name string
	svc  *service
	dir  string

	mu    sync.Mutex
	proc  *proc
	ports map[int]string // container port → loopback address of the process
	env   map[string]string
}

// serves returns the container ports a service listens on.
func (r *topology) serves(s *service) []int {
	switch s.kind {
	case natsKind:
		return []int{r.nats.Port, r.nats.Cluster.Port, r.nats.HTTPPort}
	case otlpKind:
		return []int{otlpGRPCPort}
	}
	var out []int
	e := deploy.Environment(s.cfg)
	for _, v := range []string{"GRPC_ADDR", "HTTP_ADDR"} {
		if _, p, err := net.SplitHostPort(e[v]); err == nil {
			n, _ := strconv.Atoi(p)
			out = append(out, n)
		}
	}
	return out
}

// otlpGRPCPort is the OTLP/gRPC port of an OTLP receiver such as Jaeger.
const otlpGRPCPort = 4317

// newTopology loads compose.yaml and works out how to run each service,
// failing t for anything it does not understand. Nothing runs yet.
func newTopology(t *testing.T) *topology {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	p, err := deploy.LoadCompose(ctx, repoRoot())
	if err != nil {
		t.Fatal(err)
	}
	r, err := plan(p, t.TempDir())
	if err != nil {
		t.Fatalf("compose.yaml cannot run as the topology test runs it:\n%v", err)
	}
	r.t, r.bins = t, buildBinaries(t)
	refuser, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.refuser = refuser
	go func() {
		for {
			c, err := refuser.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = refuser.Close() })
	return r
}

// plan works out how to run every service of p, with the instances'
// directories under base, and returns every service, variable, command,
// dependency or health check it does not understand.
func plan(p *types.Project, base string) (*topology, error) {
	r := &topology{project: p, services: map[string]*service{}, hosts: deploy.Hosts(p), links: map[string]*tcpproxy.Proxy{}}
	var errs []error
	for _, name := range p.ServiceNames() {
		cfg := p.Services[name]
		s := &service{cfg: cfg, started: make(chan struct{}), healthy: make(chan struct{}), failed: make(chan struct{})}
		image, _, _ := strings.Cut(cfg.Image, ":")
		switch {
		case image == "nats":
			s.kind = natsKind
			file, err := natsConfigFile(cfg)
			if err == nil {
				r.nats, err = server.ProcessConfigFile(file)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				continue
			}
		case image == "jaegertracing/jaeger":
			s.kind = otlpKind
		case cfg.Build != nil && cfg.Build.Context == p.WorkingDir:
			s.kind = ordersdKind
			if len(cfg.Command) > 0 || len(cfg.Entrypoint) > 0 {
				errs = append(errs, fmt.Errorf("%s: command %q, entrypoint %q: the topology test runs ordersd without arguments", name, cfg.Command, cfg.Entrypoint))
			}
		default:
			errs = append(errs, fmt.Errorf("%s: image %q: the topology test does not know how to run this service", name, cfg.Image))
			continue
		}
		if hc := cfg.HealthCheck; hc != nil && !hc.Disable {
			if _, err := healthProbe(s, hc.Test); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
		for _, dep := range slices.Sorted(maps.Keys(cfg.DependsOn)) {
			if c := cfg.DependsOn[dep].Condition; c != types.ServiceConditionStarted && c != types.ServiceConditionHealthy {
				errs = append(errs, fmt.Errorf("%s: depends_on %s: condition %q is not supported", name, dep, c))
			}
		}
		n := deploy.Replicas(cfg)
		for i := range n {
			in := &instance{name: name, svc: s, dir: filepath.Join(base, name)}
			if n > 1 {
				in.name = fmt.Sprintf("%s-%d", name, i+1)
				in.dir = filepath.Join(base, in.name)
			}
			if err := os.MkdirAll(in.dir, 0o700); err != nil {
				return nil, err
			}
			s.instances = append(s.instances, in)
		}
		r.services[name] = s
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// Every ordersd variable must be understood, and every address must
	// name a service port, before anything starts.
	for _, name := range p.ServiceNames() {
		s := r.services[name]
		if s.kind != ordersdKind {
			continue
		}
		env := deploy.Environment(s.cfg)
		for _, k := range slices.Sorted(maps.Keys(env)) {
			f, ok := ordersdVars[k]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: %s: the topology test does not know what to do with this variable", name, k))
				continue
			}
			if _, err := f(r, nil, env[k]); err != nil && !errors.Is(err, errNoInstance) {
				errs = append(errs, fmt.Errorf("%s: %s=%s: %w", name, k, env[k], err))
			}
		}
	}
	return r, errors.Join(errs...)
}

// natsConfigFile returns the repository file behind the service's
// --config, checking that --config and --server_name are its only
// arguments.
func natsConfigFile(s types.ServiceConfig) (string, error) {
	args := []string(s.Command)
	var file string
	for i := 0; i < len(args); i += 2 {
		if i+1 >= len(args) {
			return "", fmt.Errorf("command %q: %s has no value", args, args[i])
		}
		switch args[i] {
		case "--config":
			for _, v := range s.Volumes {
				if v.Type == types.VolumeTypeBind && v.Target == args[i+1] {
					file = v.Source
				}
			}
			if file == "" {
				return "", fmt.Errorf("--config %s is not a file bound from the repository", args[i+1])
			}
		case "--server_name":
		default:
			return "", fmt.Errorf("command %q: the topology test does not know the argument %s", args, args[i])
		}
	}
	if file == "" {
		return "", fmt.Errorf("command %q has no --config", args)
	}
	return file, nil
}

// errNoInstance is returned while checking the environment, before any
// instance exists to link from.
var errNoInstance = errors.New("no instance to link from")

// linkAddr maps host:port, as a service names another, to the loopback
// address of the link from in to it.
func (r *topology) linkAddr(in *instance, hostport string) (string, error) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return "", fmt.Errorf("port %q: %w", portStr, err)
	}
	behind := r.hosts[host]
	if len(behind) == 0 {
		return "", fmt.Errorf("no service or alias %s", host)
	}
	for _, b := range behind {
		if !slices.Contains(r.serves(r.services[b.Name]), port) {
			return "", fmt.Errorf("%s does not listen on port %d", b.Name, port)
		}
	}
	if in == nil {
		return "", errNoInstance
	}
	key := in.name + "→" + hostport
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.links[key]; ok {
		return p.Addr(), nil
	}
	p, err := tcpproxy.Start(func() []string {
		var out []string
		for _, b := range behind {
			for _, target := range r.services[b.Name].instances {
				if a := target.addr(port); a != "" {
					out = append(out, a)
				}
			}
		}
		return out
	})
	if err != nil {
		return "", err
	}
	r.t.Cleanup(func() { _ = p.Close() })
	r.links[key] = p
	return p.Addr(), nil
}

// linkURL maps the host:port of a URL.
func (r *topology) linkURL(in *instance, raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if u.Port() == "" {
		return "", fmt.Errorf("%s: no port", raw)
	}
	a, err := r.linkAddr(in, u.Host)
	if err != nil {
		return "", err
	}
	u.Host = a
	return u.String(), nil
}

// link returns the link from the instance named from to hostport, as
// created when the instance started.
func (r *topology) link(from, hostport string) *tcpproxy.Proxy {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.links[from+"→"+hostport]
	if !ok {
		r.t.Fatalf("no link from %s to %s", from, hostport)
	}
	return p
}

// addr returns the loopback address the instance's process listens on for
// a container port, or "" while it is not running.
func (in *instance) addr(port int) string {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.proc == nil || in.proc.exited() {
		return ""
	}
	return in.ports[port]
}

// instance returns the instance called name.
func (r *topology) instance(name string) *instance {
	r.t.Helper()
	for _, s := range r.services {
		for _, in := range s.instances {
			if in.name == name {
				return in
			}
		}
	}
	r.t.Fatalf("no instance %s", name)
	return nil
}

// grpcAddr and httpAddr are an ordersd instance's listeners.
func (in *instance) grpcAddr() string { return in.listener("GRPC_ADDR") }
func (in *instance) httpAddr() string { return in.listener("HTTP_ADDR") }

func (in *instance) listener(variable string) string {
	_, p, _ := net.SplitHostPort(deploy.Environment(in.svc.cfg)[variable])
	n, _ := strconv.Atoi(p)
	return in.addr(n)
}

// up starts the named services (all without names) and those they depend
// on, each once its dependencies are started or healthy, as compose up
// does, and waits until every one is healthy.
func (r *topology) up(names ...string) {
	r.t.Helper()
	if len(names) == 0 {
		names = r.project.ServiceNames()
	}
	run := map[string]*service{}
	var add func(name string)
	add = func(name string) {
		if _, ok := run[name]; ok {
			return
		}
		run[name] = r.services[name]
		for dep := range r.services[name].cfg.DependsOn {
			add(dep)
		}
	}
	for _, n := range names {
		add(n)
	}
	errs := make(chan error, len(run))
	var wg sync.WaitGroup
	for _, s := range run {
		wg.Go(func() {
			if err := r.upService(s); err != nil {
				close(s.failed)
				errs <- fmt.Errorf("%s: %w", s.cfg.Name, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		r.t.Error(err)
	}
	if r.t.Failed() {
		r.t.FailNow()
	}
}

// startWait bounds a service's wait for its dependencies and its own
// health.
const startWait = 90 * time.Second

func (r *topology) upService(s *service) error {
	deadline := time.After(startWait)
	for dep, d := range s.cfg.DependsOn {
		ch := r.services[dep].started
		if d.Condition == types.ServiceConditionHealthy {
			ch = r.services[dep].healthy
		}
		select {
		case <-ch:
		case <-r.services[dep].failed:
			return fmt.Errorf("dependency %s failed", dep)
		case <-deadline:
			return fmt.Errorf("dependency %s not %s", dep, d.Condition)
		}
	}
	if s.kind == otlpKind {
		if r.otlp == nil {
			r.otlp, r.otlpAddr = otlptest.Start(r.t)
		}
		for _, in := range s.instances {
			in.mu.Lock()
			in.ports = map[int]string{otlpGRPCPort: strings.TrimPrefix(r.otlpAddr, "http://")}
			in.proc = &proc{done: make(chan struct{})} // in the test process: never exits
			in.mu.Unlock()
		}
		close(s.started)
		close(s.healthy)
		return nil
	}
	for _, in := range s.instances {
		if err := r.start(in); err != nil {
			return fmt.Errorf("%s: %w", in.name, err)
		}
	}
	close(s.started)
	for _, in := range s.instances {
		if err := r.waitHealthy(in, time.Now().Add(startWait)); err != nil {
			return err
		}
	}
	close(s.healthy)
	return nil
}

// start runs the instance's process and waits until it has told its
// listening addresses.
func (r *topology) start(in *instance) error {
	switch in.svc.kind {
	case natsKind:
		return r.startNATS(in)
	case ordersdKind:
		return r.startOrdersd(in)
	}
	return fmt.Errorf("cannot start a %v", in.svc.kind)
}

func (r *topology) startNATS(in *instance) error {
	var routes []string
	for _, u := range r.nats.Routes {
		m, err := r.linkURL(in, u.String())
		if err != nil {
			return fmt.Errorf("route %s: %w", u, err)
		}
		routes = append(routes, m)
	}
	file, err := r.natsInstanceConfig(in)
	if err != nil {
		return err
	}
	args := slices.Clone([]string(in.svc.cfg.Command))
	args[slices.Index(args, "--config")+1] = file
	// The file's settings stand; only where to listen and where the
	// routes lead change, as the compose network would have them.
	portsDir := filepath.Join(in.dir, "ports")
	if err := os.MkdirAll(portsDir, 0o700); err != nil {
		return err
	}
	args = append(args, "--addr", "127.0.0.1", "--port", "-1", "--http_port", "-1",
		"--cluster", "nats://127.0.0.1:-1", "--cluster_advertise", r.refuser.Addr().String(),
		"--routes", strings.Join(routes, ","), "--ports_file_dir", portsDir)
	p, err := startProc(r.t, in.name, r.bins.natsServer, args, nil)
	if err != nil {
		return err
	}
	file = filepath.Join(portsDir, fmt.Sprintf("nats-server_%d.ports", p.cmd.Process.Pid))
	var ports server.Ports
	for deadline := time.Now().Add(30 * time.Second); ; {
		b, err := os.ReadFile(file)
		if err == nil && json.Unmarshal(b, &ports) == nil && len(ports.Nats) > 0 && len(ports.Cluster) > 0 && len(ports.Monitoring) > 0 {
			break
		}
		if p.exited() || time.Now().After(deadline) {
			return fmt.Errorf("no ports file %s:\n%s", file, p.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	hostport := func(raw string) string {
		u, _ := url.Parse(raw)
		return u.Host
	}
	in.mu.Lock()
	in.proc = p
	in.ports = map[int]string{r.nats.Port: hostport(ports.Nats[0]), r.nats.Cluster.Port: hostport(ports.Cluster[0]),
		r.nats.HTTPPort: hostport(ports.Monitoring[0])}
	in.mu.Unlock()
	return nil
}

// storeDirLine is the store_dir setting of a nats-server configuration.
var storeDirLine = regexp.MustCompile(`(?m)^(\s*store_dir\s*[:=]\s*)(\S+)\s*$`)

// natsInstanceConfig writes the instance's copy of the service's
// configuration file with its JetStream store_dir, which must be the target
// of a volume of the service, moved to the instance's directory (the
// nats-server refuses --store_dir beside a store_dir in the file).
func (r *topology) natsInstanceConfig(in *instance) (string, error) {
	src, err := natsConfigFile(in.svc.cfg)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	var volume bool
	for _, v := range in.svc.cfg.Volumes {
		volume = volume || (v.Type == types.VolumeTypeVolume && v.Target == r.nats.StoreDir)
	}
	if !volume {
		return "", fmt.Errorf("store_dir %s is not a volume of the service", r.nats.StoreDir)
	}
	m := storeDirLine.FindAllSubmatch(b, -1)
	if len(m) != 1 || strings.Trim(string(m[0][2]), `"'`) != r.nats.StoreDir {
		return "", fmt.Errorf("%s: want one store_dir line naming %s", src, r.nats.StoreDir)
	}
	b = storeDirLine.ReplaceAll(b, []byte("${1}"+strconv.Quote(filepath.Join(in.dir, "data"))))
	out := filepath.Join(in.dir, filepath.Base(src))
	return out, os.WriteFile(out, b, 0o600)
}

func (r *topology) startOrdersd(in *instance) error {
	env := map[string]string{}
	for k, v := range deploy.Environment(in.svc.cfg) {
		m, err := ordersdVars[k](r, in, v)
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		env[k] = m
	}
	p, err := startProc(r.t, in.name, r.bins.ordersd, nil, env)
	if err != nil {
		return err
	}
	grpcAddr, httpAddr, err := p.listening()
	if err != nil {
		return err
	}
	e := deploy.Environment(in.svc.cfg)
	port := func(v string) int {
		_, p, _ := net.SplitHostPort(e[v])
		n, _ := strconv.Atoi(p)
		return n
	}
	env["GRPC_ADDR"], env["HTTP_ADDR"] = grpcAddr, httpAddr
	in.mu.Lock()
	in.proc = p
	in.env = env
	in.ports = map[int]string{port("GRPC_ADDR"): grpcAddr, port("HTTP_ADDR"): httpAddr}
	in.mu.Unlock()
	return nil
}

// waitHealthy runs the service's health check until it passes.
func (r *topology) waitHealthy(in *instance, deadline time.Time) error {
	hc := in.svc.cfg.HealthCheck
	if hc == nil || hc.Disable {
		return nil
	}
	for {
		err := r.healthCheck(in, hc.Test)
		if err == nil {
			return nil
		}
		in.mu.Lock()
		p := in.proc
		in.mu.Unlock()
		if p.exited() {
			return fmt.Errorf("%s exited:\n%s", in.name, p.output())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy: %w", in.name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// healthCheck runs the service's health check against the instance.
func (r *topology) healthCheck(in *instance, test []string) error {
	probe, err := healthProbe(in.svc, test)
	if err != nil {
		return err
	}
	return probe(r, in)
}

// healthProbe returns how to run a compose health check the test
// understands: ordersd's own (the image's /ordersd healthcheck, run with
// the instance's environment) or an HTTP probe of the container's own
// loopback by wget.
func healthProbe(s *service, test []string) (func(*topology, *instance) error, error) {
	if len(test) < 2 || test[0] != "CMD" {
		return nil, fmt.Errorf("health check %q: the topology test runs only CMD checks", test)
	}
	switch {
	case test[1] == "/ordersd" && s.kind == ordersdKind:
		return func(r *topology, in *instance) error {
			cmd := exec.Command(r.bins.ordersd, test[2:]...)
			in.mu.Lock()
			cmd.Env = environ(in.env)
			in.mu.Unlock()
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("%w: %s", err, out)
			}
			return nil
		}, nil
	case test[1] == "wget":
		var target string
		for _, a := range test[2:] {
			switch {
			case a == "-q" || a == "--spider":
			case strings.HasPrefix(a, "http://"):
				target = a
			default:
				return nil, fmt.Errorf("health check %q: unknown wget argument %s", test, a)
			}
		}
		u, err := url.Parse(target)
		if err != nil || u.Hostname() != "127.0.0.1" || u.Port() == "" {
			return nil, fmt.Errorf("health check %q: want an http://127.0.0.1:PORT URL", test)
		}
		port, _ := strconv.Atoi(u.Port())
		return func(_ *topology, in *instance) error {
			probe := *u
			if probe.Host = in.addr(port); probe.Host == "" {
				return fmt.Errorf("health check %q: the service does not listen on %d", test, port)
			}
			c := &http.Client{Timeout: 3 * time.Second}
			res, err := c.Get(probe.String())
			if err != nil {
				return err
			}
			_ = res.Body.Close()
			if res.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: %s", probe.String(), res.Status)
			}
			return nil
		}, nil
	}
	return nil, fmt.Errorf("health check %q: the topology test does not know this command", test)
}

// kill SIGKILLs the instance's process and waits for it.
func (r *topology) kill(in *instance) {
	in.mu.Lock()
	p := in.proc
	in.mu.Unlock()
	p.kill()
}

// restart starts a killed instance again on its directory and waits for it
// to be healthy, as compose's restart policy would; the test fails if the
// service's policy would not restart it.
func (r *topology) restart(in *instance) {
	r.t.Helper()
	switch in.svc.cfg.Restart {
	case types.RestartPolicyAlways, types.RestartPolicyUnlessStopped, types.RestartPolicyOnFailure:
	default:
		r.t.Fatalf("%s: restart policy %q would leave it down", in.name, in.svc.cfg.Restart)
	}
	if err := r.start(in); err != nil {
		r.t.Fatalf("restart %s: %v", in.name, err)
	}
	if err := r.waitHealthy(in, time.Now().Add(startWait)); err != nil {
		r.t.Fatal(err)
	}
}

// buildBinaries

type binaries struct{ ordersd, natsServer string }

var built struct {
	once sync.Once
	dir  string
	bins binaries
	err  error
}

// buildBinaries builds ordersd and the nats-server release go.mod pins,
// once per test binary, without the race detector: they are the system
// under test, not the test.
func buildBinaries(t *testing.T) binaries {
	t.Helper()
	built.once.Do(func() {
		start := time.Now()
		defer func() { t.Logf("built ordersd and nats-server in %v", time.Since(start).Round(time.Millisecond)) }()
		built.bins = binaries{ordersd: filepath.Join(built.dir, "ordersd"), natsServer: filepath.Join(built.dir, "nats-server")}
		// One build, so both link at once; the main package of the
		// nats-server module is named after the module without /v2.
		cmd := exec.Command("go", "build", "-o", built.dir+string(filepath.Separator), "./cmd/ordersd", "github.com/nats-io/nats-server/v2")
		cmd.Dir = repoRoot()
		if b, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %w\n%s", err, b)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bins
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "topology-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	built.dir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func repoRoot() string {
	wd, _ := os.Getwd() // the package directory under go test
	return filepath.Join(wd, "..", "..")
}

// proc is a child process of the test, stopped when the test ends.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}

	mu   sync.Mutex
	out  bytes.Buffer // the last lines of its output
	addr chan [2]string
}

// maxOutput bounds the output kept per process for a failure's log.
const maxOutput = 64 << 10

// environ turns variables into a process environment. Nothing of the
// test's own environment is passed on: the process sees what compose
// would give it.
func environ(env map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

func startProc(t *testing.T, name, bin string, args []string, env map[string]string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = environ(env)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), addr: make(chan [2]string, 1)}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go p.scan(pr)
	go func() {
		_ = cmd.Wait()
		_ = pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s (pid %d) output:\n%s", p.name, p.cmd.Process.Pid, p.output())
		}
	})
	return p, nil
}

// scan keeps the output and picks ordersd's "listening" line.
func (p *proc) scan(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg  string `json:"msg"`
			GRPC string `json:"grpc"`
			HTTP string `json:"http"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "ordersd listening" {
			p.addr <- [2]string{line.GRPC, line.HTTP}
		}
		p.mu.Lock()
		if p.out.Len() > maxOutput {
			rest := p.out.Bytes()[p.out.Len()-maxOutput/2:]
			p.out = *bytes.NewBuffer(slices.Clone(rest))
		}
		p.out.Write(sc.Bytes())
		p.out.WriteByte('\n')
		p.mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, r)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// listening waits for ordersd's listening line.
func (p *proc) listening() (grpcAddr, httpAddr string, err error) {
	select {
	case a := <-p.addr:
		return a[0], a[1], nil
	case <-p.done:
		return "", "", fmt.Errorf("exited before listening:\n%s", p.output())
	case <-time.After(startWait):
		return "", "", fmt.Errorf("not listening after %s:\n%s", startWait, p.output())
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill SIGKILLs the process: no chance to flush or hand anything over.
func (p *proc) kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop asks the process to stop (SIGTERM, as compose down does), and kills
// it if it is still running after stopWait.
func (p *proc) stop() {
	if p.cmd == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopWait):
		p.kill()
	}
}

// stopWait is shorter than compose's stop_grace_period: nothing is in
// flight when a test ends.
const stopWait = 5 * time.Second
