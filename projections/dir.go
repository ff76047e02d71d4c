package projections

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// currentFile names the live database file inside a Dir. It is replaced
// atomically (write, fsync, rename), so a restart always opens a complete
// read model: the old one if a rebuild never finished, the new one if it
// swapped.
const currentFile = "CURRENT"

// Dir is the directory holding a node's read-model databases.
type Dir struct {
	path    string
	current *ReadModel
}

// Open opens the live read model in dir (creating dir and a first database
// if needed) and removes files left by an interrupted rebuild.
func Open(ctx context.Context, dir string) (*Dir, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("projections: %w", err)
	}
	name := "orders.db"
	if b, err := os.ReadFile(filepath.Join(dir, currentFile)); err == nil {
		name = strings.TrimSpace(string(b))
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("projections: %w", err)
	}
	if name == "" || strings.ContainsAny(name, `/\`) {
		return nil, fmt.Errorf("projections: %s names no database file", filepath.Join(dir, currentFile))
	}
	removeStale(dir, name)
	rm, err := OpenReadModel(ctx, filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	return &Dir{path: dir, current: rm}, nil
}

// removeStale deletes database files other than the live one: partial
// rebuilds and databases a finished rebuild replaced.
func removeStale(dir, live string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		n := e.Name()
		base := strings.TrimSuffix(strings.TrimSuffix(n, "-wal"), "-shm")
		if strings.HasSuffix(base, ".db") && base != live {
			_ = os.Remove(filepath.Join(dir, n))
		}
	}
}

// Current returns the live read model.
func (d *Dir) Current() *ReadModel { return d.current }

// Path is the directory.
func (d *Dir) Path() string { return d.path }

// newModel creates a fresh database for a rebuild.
func (d *Dir) newModel(ctx context.Context) (*ReadModel, error) {
	name := fmt.Sprintf("orders-%d.db", time.Now().UnixNano())
	return OpenReadModel(ctx, filepath.Join(d.path, name))
}

// discard closes and deletes a read model that will not be used.
func discard(rm *ReadModel) {
	_ = rm.Close()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		_ = os.Remove(rm.Path() + suffix)
	}
}

// makeCurrent records rm as the live database, durably.
func (d *Dir) makeCurrent(rm *ReadModel) error {
	tmp := filepath.Join(d.path, currentFile+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(filepath.Base(rm.Path()) + "\n"); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(d.path, currentFile)); err != nil {
		return err
	}
	if df, err := os.Open(d.path); err == nil {
		_ = df.Sync()
		_ = df.Close()
	}
	d.current = rm
	return nil
}

// Close closes the live read model.
func (d *Dir) Close() error { return d.current.Close() }
