package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"

	"github.com/orderstream/orderstream/internal/config"
)

// The healthcheck asks the node itself, never a proxy: with HTTP_PROXY in
// its environment (set for a container's calls out) and HTTP_ADDR naming
// the node by a host name, the probe went to the proxy, whose answer
// passed for the node's. Here the node is down (nothing listens on its
// port) and the proxy answers 200 to anything. net/http reads the proxy
// variables once per process, so the healthcheck runs in a process of
// its own.
func TestHealthcheckAsksNoProxy(t *testing.T) {
	if os.Getenv("ORDERSD_HEALTHCHECK_CHILD") == "1" {
		cfg, err := config.Load()
		if err != nil {
			// Not 1, which the healthcheck's failure is.
			fmt.Fprintln(os.Stderr, err)
			os.Exit(childSetUpFailed)
		}
		os.Exit(subcommand(t.Context(), cfg, []string{"healthcheck"}, os.Stderr))
	}
	var asked atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { asked.Add(1) }))
	t.Cleanup(proxy.Close)
	// A port nothing listens on: the node is down.
	_, port, err := net.SplitHostPort(freeLoopback(t))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHealthcheckAsksNoProxy$")
	// localhost. (with its dot) is loopback, but not a name net/http
	// knows to send past a proxy.
	cmd.Env = append(os.Environ(), "ORDERSD_HEALTHCHECK_CHILD=1", "HTTP_PROXY="+proxy.URL, "http_proxy="+proxy.URL,
		"NO_PROXY=", "no_proxy=", "HTTP_ADDR=localhost.:"+port, "ALLOW_INSECURE=true")
	cmd.Stderr = os.Stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("healthcheck of a node that is down, behind HTTP_PROXY: %v, want exit 1", err)
	}
	if n := asked.Load(); n != 0 {
		t.Errorf("the proxy was asked %d times", n)
	}
}

// childSetUpFailed is the exit code of a healthcheck process that could
// not load its configuration.
const childSetUpFailed = 3
