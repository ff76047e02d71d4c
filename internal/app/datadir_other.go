//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly || illumos || windows)

package app

import "os"

// lockFile has no lock to take on this operating system: DATA_DIR is not
// locked, and keeping one ordersd per DATA_DIR is up to the operator.
func lockFile(string) (*os.File, error) { return nil, nil }
