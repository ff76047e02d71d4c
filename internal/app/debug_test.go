package app_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/orderstream/orderstream/internal/app/apptest"
)

// DEBUG_ADDR serves the runtime's profiles on a listener of its own; the
// API's HTTP listener never does, and without DEBUG_ADDR there is none.
func TestDebugAddrServesProfiles(t *testing.T) {
	addrs, _ := apptest.Start(t, map[string]string{"ROLES": "command", "DEBUG_ADDR": "127.0.0.1:0"})
	if addrs.Debug == "" {
		t.Fatal("DEBUG_ADDR set but no debug address reported")
	}
	get := func(url string) (int, []byte) {
		t.Helper()
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res.StatusCode, b
	}
	code, heap := get("http://" + addrs.Debug + "/debug/pprof/heap")
	// A profile is gzipped protobuf: the gzip magic number is enough to
	// know it is one and not an error page.
	if code != http.StatusOK || len(heap) < 2 || heap[0] != 0x1f || heap[1] != 0x8b {
		t.Fatalf("heap profile: HTTP %d, %d bytes", code, len(heap))
	}
	if code, _ := get("http://" + addrs.Debug + "/debug/pprof/goroutine?debug=1"); code != http.StatusOK {
		t.Fatalf("goroutine profile: HTTP %d", code)
	}
	// The README takes an execution trace the same way; the runtime's
	// trace format opens with its version line.
	if code, tr := get("http://" + addrs.Debug + "/debug/pprof/trace?seconds=0.1"); code != http.StatusOK || !bytes.HasPrefix(tr, []byte("go 1.")) {
		t.Fatalf("execution trace: HTTP %d, %d bytes", code, len(tr))
	}
	if code, _ := get("http://" + addrs.HTTP + "/debug/pprof/heap"); code == http.StatusOK {
		t.Fatal("the API listener serves profiles")
	}

	off, _ := apptest.Start(t, map[string]string{"ROLES": "command"})
	if off.Debug != "" {
		t.Fatalf("no DEBUG_ADDR, yet a debug listener on %s", off.Debug)
	}
}
