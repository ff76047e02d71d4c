package config_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/orderstream/orderstream/internal/config"
)

// readmeVariable is one variable named in a README table row.
type readmeVariable struct {
	line     int
	dflt     string // the default column's value for it; "-" when the table has none
	hasDflt  bool
	external bool // handled outside internal/config (OpenTelemetry's own)
}

var (
	backticked = regexp.MustCompile("`([^`]*)`")
	envName    = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)
)

// readmeVariables collects the variables named in the first column of every
// table in the repository's README.md, with their documented defaults where
// the table has a "default" column.
func readmeVariables(t *testing.T) map[string]readmeVariable {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]readmeVariable{}
	dfltCol := -1
	for i, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "|") {
			dfltCol = -1
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for j := range cells {
			cells[j] = strings.TrimSpace(cells[j])
		}
		if strings.Trim(cells[0], "-: ") == "" {
			continue // the separator row
		}
		if cells[0] == "variable" {
			dfltCol = slices.Index(cells, "default")
			continue
		}
		var names []string
		for _, m := range backticked.FindAllStringSubmatch(cells[0], -1) {
			if envName.MatchString(m[1]) {
				names = append(names, m[1])
			}
		}
		var defaults []string
		hasDflt := dfltCol > 0 && dfltCol < len(cells)
		if hasDflt {
			switch d := cells[dfltCol]; d {
			case "empty", "":
				for range names {
					defaults = append(defaults, "")
				}
			default:
				for _, m := range backticked.FindAllStringSubmatch(d, -1) {
					defaults = append(defaults, m[1])
				}
				if len(defaults) == 1 {
					for len(defaults) < len(names) {
						defaults = append(defaults, defaults[0])
					}
				}
			}
		}
		for k, name := range names {
			if _, dup := out[name]; dup {
				t.Errorf("README.md:%d: %s documented twice", i+1, name)
			}
			v := readmeVariable{line: i + 1, hasDflt: hasDflt, external: strings.HasPrefix(name, "OTEL_")}
			if hasDflt {
				if len(defaults) != len(names) {
					t.Errorf("README.md:%d: %d defaults for %d variables", i+1, len(defaults), len(names))
				} else {
					v.dflt = defaults[k]
				}
			}
			out[name] = v
		}
	}
	return out
}

// The README's configuration tables document exactly the variables ordersd
// reads, with the defaults it applies.
func TestREADMEDocumentsEveryVariable(t *testing.T) {
	documented := readmeVariables(t)
	if len(documented) == 0 {
		t.Fatal("README.md: no variable tables found")
	}
	known := map[string]bool{}
	for _, v := range config.Variables() {
		known[v.Name] = true
		d, ok := documented[v.Name]
		if !ok {
			t.Errorf("%s is not in README.md's tables", v.Name)
			continue
		}
		if d.hasDflt && d.dflt != v.Default {
			t.Errorf("README.md:%d: %s default %q, internal/config says %q", d.line, v.Name, d.dflt, v.Default)
		}
	}
	for name, d := range documented {
		if !known[name] && !d.external {
			t.Errorf("README.md:%d: %s is not a variable ordersd reads", d.line, name)
		}
	}
}
