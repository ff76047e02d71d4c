package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
)

// --protocol rest --tls against an http:// base URL sent the bearer token
// in clear text (the TLS settings apply to https:// only), and went on.
func TestRESTWithTLSNeverSendsTheTokenInClear(t *testing.T) {
	if os.Getenv("ORDERSBENCH_TEST_MAIN") == "1" {
		os.Args = []string{"ordersbench", "--protocol", "rest", "--tls", "--http", os.Getenv("ORDERSBENCH_TEST_HTTP"),
			"--rate", "20", "--duration", "200ms", "--mix", "get=1"}
		main()
		return
	}
	var clear atomic.Int64
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			clear.Add(1)
		}
		w.WriteHeader(http.StatusBadRequest)
	}))
	t.Cleanup(plain.Close)
	cmd := exec.Command(os.Args[0], "-test.run=^TestRESTWithTLSNeverSendsTheTokenInClear$")
	cmd.Env = append(os.Environ(), "ORDERSBENCH_TEST_MAIN=1", "ORDERS_TOKEN=s3cr3t-admin-token-0123456789", "ORDERSBENCH_TEST_HTTP="+plain.URL)
	out, err := cmd.CombinedOutput()
	if n := clear.Load(); n > 0 {
		t.Fatalf("--protocol rest --tls sent the bearer token over plain HTTP %d times:\n%s", n, out)
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("--protocol rest --tls with an http:// URL: %v, want exit 1:\n%s", err, out)
	}
}
