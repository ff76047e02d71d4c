//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly || illumos

package app

import (
	"errors"
	"os"
	"syscall"
)

// lockFile opens path, creating it, and takes an exclusive flock(2) on it
// without waiting: errLocked when another open file holds it, whether in
// another process or in this one. Closing the file releases the lock, as
// the process's end does.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errLocked
		}
		return nil, err
	}
	return f, nil
}
