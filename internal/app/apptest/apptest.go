// Package apptest runs the whole of ordersd in-process, on loopback ports
// and a temporary data directory, for tests and benchmarks of the packages
// built around it.
package apptest

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/orderstream/orderstream/internal/app"
	"github.com/orderstream/orderstream/internal/config"
)

// Config is ordersd's configuration from vars over these defaults: DATA_DIR
// a temporary directory of tb, GRPC_ADDR, HTTP_ADDR and NATS_LISTEN free
// loopback ports (embedded NATS). It fails tb when vars are invalid.
func Config(tb testing.TB, vars map[string]string) config.Config {
	tb.Helper()
	all := map[string]string{"DATA_DIR": tb.TempDir(), "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0", "NATS_LISTEN": "127.0.0.1:0"}
	for k, v := range vars {
		all[k] = v
	}
	cfg, err := config.FromMap(all)
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// Start runs ordersd configured by vars over these defaults: DATA_DIR a
// temporary directory of tb, GRPC_ADDR, HTTP_ADDR and NATS_LISTEN free
// loopback ports (embedded NATS). It returns once every listener is up, with
// the addresses, and a stop function that shuts ordersd down and reports
// its error; stop also runs when tb ends.
func Start(tb testing.TB, vars map[string]string, opts ...app.Option) (app.Addrs, func()) {
	tb.Helper()
	cfg := Config(tb, vars)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan app.Addrs, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), func(a app.Addrs) { ready <- a }, opts...)
	}()
	var addrs app.Addrs
	select {
	case addrs = <-ready:
	case err := <-done:
		cancel()
		tb.Fatalf("ordersd stopped before it was ready: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("ordersd: %v", err)
			}
		})
	}
	tb.Cleanup(stop)
	return addrs, stop
}
