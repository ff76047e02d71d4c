package loadgen

import (
	"bytes"
	"debug/buildinfo"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// Machine says when and where a floor ran and what it ran, so that its
// figures carry what they depend on: the sections of BENCHMARKS.md are
// written from it (FloorReport.Markdown).
type Machine struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	OS       string    `json:"os"`
	Arch     string    `json:"arch"`
	// CPUs is the logical processors the load generator's runtime sees:
	// ordersd, the load generator and the floors share them.
	CPUs        int    `json:"cpus"`
	CPUModel    string `json:"cpu_model,omitempty"`    // /proc/cpuinfo's model name; "" elsewhere
	MemoryBytes uint64 `json:"memory_bytes,omitempty"` // /proc/meminfo's MemTotal; 0 elsewhere
	// LoadGenGo is the Go release the load generator was built with.
	LoadGenGo string `json:"ordersbench_go"`
	Ordersd   Build  `json:"ordersd"`
}

// Build is what an executable records of its own build.
type Build struct {
	Go       string `json:"go"`
	Revision string `json:"revision,omitempty"` // the commit it was built from, when the build recorded it
	Modified bool   `json:"modified,omitempty"` // built from a work tree with changes beyond Revision
	// NATSServer is the nats-server module linked in, whose server ordersd
	// embeds when it runs without NATS_URL.
	NATSServer string `json:"nats_server,omitempty"`
}

// natsServerModule is the module whose version Build reports.
const natsServerModule = "github.com/nats-io/nats-server/v2"

// readBuild reads the build information of the executable at path. It
// fails for a file that is not a Go executable.
func readBuild(path string) (Build, error) {
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return Build{}, err
	}
	return buildOf(info), nil
}

// buildOf is what info records of a build: Go, the commit (when the build
// stamped it: -buildvcs) and the nats-server module.
func buildOf(info *debug.BuildInfo) Build {
	b := Build{Go: info.GoVersion}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	for _, d := range info.Deps {
		if d.Path == natsServerModule {
			b.NATSServer = d.Version
			if d.Replace != nil {
				b.NATSServer = d.Replace.Version
			}
		}
	}
	return b
}

// describeMachine describes this machine and the ordersd at path; what it
// cannot read (no /proc, an executable without build information) stays
// empty rather than failing the run.
func describeMachine(ordersd string) Machine {
	m := Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), LoadGenGo: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPUModel = cpuModel(b)
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.MemoryBytes = uint64(procKB(b, "MemTotal"))
	}
	m.Ordersd, _ = readBuild(ordersd)
	return m
}

// cpuModel is the first "model name" of a /proc/cpuinfo.
func cpuModel(cpuinfo []byte) string {
	for line := range bytes.Lines(cpuinfo) {
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && string(bytes.TrimSpace(k)) == "model name" {
			return string(bytes.TrimSpace(v))
		}
	}
	return ""
}

// procKB is the value of key in a /proc file of "key: N kB" lines
// (/proc/meminfo, /proc/PID/status), in bytes; 0 when absent or not a
// number of kB.
func procKB(b []byte, key string) int64 {
	for line := range bytes.Lines(b) {
		f := strings.Fields(string(line))
		if len(f) == 3 && f[0] == key+":" && f[2] == "kB" {
			if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

// String is the machine in one sentence: when (UTC), the processors and
// memory, and the builds measured.
func (m Machine) String() string {
	var b strings.Builder
	start, end := m.Started.UTC(), m.Finished.UTC()
	fmt.Fprintf(&b, "%s, %s–%s UTC", start.Format(time.DateOnly), start.Format("15:04"), end.Format("15:04"))
	if end.YearDay() != start.YearDay() || end.Year() != start.Year() {
		fmt.Fprintf(&b, " (%s)", end.Format(time.DateOnly))
	}
	fmt.Fprintf(&b, "; %d CPUs", m.CPUs)
	if m.CPUModel != "" {
		fmt.Fprintf(&b, " (%s)", m.CPUModel)
	}
	if m.MemoryBytes > 0 {
		fmt.Fprintf(&b, ", %.1f GiB", float64(m.MemoryBytes)/(1<<30))
	}
	fmt.Fprintf(&b, ", %s/%s; ordersd %s", m.OS, m.Arch, m.Ordersd)
	fmt.Fprintf(&b, "; ordersbench built with %s", m.LoadGenGo)
	return b.String()
}

// shortRevision is the build's commit, short, marked when the work tree
// had changes; "(commit not recorded)" without one.
func (b Build) shortRevision() string {
	if b.Revision == "" {
		return "(commit not recorded)"
	}
	rev := b.Revision[:min(len(b.Revision), 7)]
	if b.Modified {
		rev += " with local changes"
	}
	return rev
}

// String names a build: its commit (short), whether it had changes, its Go
// release and the nats-server it embeds.
func (b Build) String() string {
	parts := []string{b.shortRevision()}
	if b.Go != "" {
		parts = append(parts, "built with "+b.Go)
	}
	if b.NATSServer != "" {
		parts = append(parts, "nats-server "+b.NATSServer+" embedded")
	}
	return strings.Join(parts, ", ")
}

// The newest floor run in a document sits between these markers, which
// ReplaceNewest rewrites.
const (
	newestBegin = "<!-- ordersbench floor: newest run -->"
	newestEnd   = "<!-- ordersbench floor: end of newest run -->"
)

// ErrNoNewestSection reports a document without the markers of the newest
// floor run, or with them out of order.
var ErrNoNewestSection = errors.New("loadgen: no section for the newest floor run (" + newestBegin + " … " + newestEnd + ")")

// ReplaceNewest returns doc with the newest floor run's section (between
// its markers, which stay) replaced by section. It returns
// ErrNoNewestSection when doc has no such section.
func ReplaceNewest(doc []byte, section string) ([]byte, error) {
	i := bytes.Index(doc, []byte(newestBegin))
	j := bytes.Index(doc, []byte(newestEnd))
	if i < 0 || j < i || bytes.Count(doc, []byte(newestBegin)) != 1 || bytes.Count(doc, []byte(newestEnd)) != 1 {
		return nil, ErrNoNewestSection
	}
	var out bytes.Buffer
	out.Write(doc[:i+len(newestBegin)])
	out.WriteString("\n\n")
	out.WriteString(strings.TrimSpace(section))
	out.WriteString("\n\n")
	out.Write(doc[j:])
	return out.Bytes(), nil
}
