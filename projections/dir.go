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
// rebuilds and databases a finished rebuild replaced, which a crash left
// before their discard. Each is overwritten first (shred), as discard
// does: a replaced file missed the erasures applied after its swap.
func removeStale(dir, live string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		n := e.Name()
		base := strings.TrimSuffix(strings.TrimSuffix(n, "-wal"), "-shm")
		if strings.HasSuffix(base, ".db") && base != live {
			p := filepath.Join(dir, n)
			if f, err := os.OpenFile(p, os.O_WRONLY, 0); err == nil {
				shred(f)
			}
			_ = os.Remove(p)
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

// dbFiles are the suffixes of a database's files: the file itself, its
// WAL and the WAL's shared-memory index.
var dbFiles = []string{"", "-wal", "-shm"}

// discard closes and deletes a read model that will not be used, its
// files overwritten first (shred). A model a swap replaced missed the
// erasures applied after the swap, and every model holds the personal
// data of customers forgotten later: unlinked as they were, the files'
// blocks kept those bytes on the disk. They are overwritten once no
// connection is open on them (a query that started before the swap may
// still run), or SQLite would read zeros, or write pages back, under it;
// or once release gave up waiting (releaseWait): only read connections
// can be left then, whose query reads zeros or fails, and whose close
// finds nothing to write back. Each file is opened before the model is
// closed, as the last connection to close deletes the WAL.
func discard(rm *ReadModel) {
	var held []*os.File
	for _, suffix := range dbFiles {
		if f, err := os.OpenFile(rm.Path()+suffix, os.O_WRONLY, 0); err == nil {
			held = append(held, f)
		}
	}
	rm.release()
	// Closing these releases the POSIX locks of any connection to the
	// file in this process: there is none left, unless release gave up
	// on a query that never ended.
	for _, f := range held {
		shred(f)
	}
	for _, suffix := range dbFiles {
		_ = os.Remove(rm.Path() + suffix)
	}
}

// shred overwrites f with zeros, syncs it and closes it, so that the
// blocks it frees once unlinked hold nothing of it. What a copy-on-write
// file system or an SSD keeps of the overwritten blocks is below this.
func shred(f *os.File) {
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return
	}
	zeros := make([]byte, min(fi.Size(), 1<<20))
	for off := int64(0); off < fi.Size(); {
		n, err := f.WriteAt(zeros[:min(int64(len(zeros)), fi.Size()-off)], off)
		if err != nil {
			return
		}
		off += int64(n)
	}
	_ = f.Sync()
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
