package readme_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The README's test command is `make test`, which runs `go test -race ./...`
// in every module the Makefile lists; a root `go test ./...` does not enter
// a nested module, so a go.mod missing from that list would leave its tests
// unrun by the README, `make lint` and CI alike.
func TestTestCommandCoversEveryModule(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile("(?m)^make test +# every test").Match(readme) {
		t.Error("README.md's test command is not `make test`")
	}
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^MODULES := (.*)$`).FindSubmatch(makefile)
	if m == nil {
		t.Fatal("Makefile: no MODULES := line")
	}
	listed := strings.Fields(string(m[1]))
	var found []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "data") {
			return filepath.SkipDir
		}
		if !d.IsDir() && d.Name() == "go.mod" {
			rel, err := filepath.Rel(root, filepath.Dir(path))
			if err != nil {
				return err
			}
			found = append(found, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(found)
	slices.Sort(listed)
	if !slices.Equal(found, listed) {
		t.Errorf("Makefile's MODULES %q, the repository's go.mod files are in %q", listed, found)
	}
}
