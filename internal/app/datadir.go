package app

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrDataDirInUse reports a DATA_DIR that another ordersd holds: two
// processes on one store would each run a nats-server on it (and a read
// model), and acknowledged orders would be lost.
var ErrDataDirInUse = errors.New("in use by another ordersd")

// errLocked is what lockFile returns for a lock another holder has.
var errLocked = errors.New("locked")

// lockName is the file in DATA_DIR whose lock a running ordersd holds.
const lockName = ".lock"

// lockDataDir takes DATA_DIR's lock, without waiting: an exclusive lock on
// dir/.lock, held until release (or until the process ends, however it
// ends, so a crash leaves nothing to clean up). The file stays; it holds
// the holder's process id, for the error a second ordersd reports. Where
// the operating system offers no such lock (see lockFile) the directory is
// not locked.
func lockDataDir(dir string) (release func(), err error) {
	path := filepath.Join(dir, lockName)
	f, err := lockFile(path)
	if errors.Is(err, errLocked) {
		holder := path + " is locked"
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
				holder = fmt.Sprintf("pid %d holds %s", pid, path)
			}
		}
		return nil, fmt.Errorf("%s is %w (%s)", dir, ErrDataDirInUse, holder)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: lock: %w", dir, err)
	}
	if f == nil {
		return func() {}, nil
	}
	// Only the holder writes, so the id is never another's.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { _ = f.Close() }, nil
}
