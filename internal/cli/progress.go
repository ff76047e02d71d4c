package cli

import (
	"io"

	"github.com/orderstream/orderstream/internal/client"
)

// newProgress returns a bar drawn on stderr when progress is on
// (progressOn), so piped or JSON output stays clean.
func newProgress(a *app, label string) *client.Progress {
	var w io.Writer
	if a.progressOn() {
		w = a.io.Err
	}
	return client.NewProgress(w, label)
}
