// Command ordersd runs the orderstream server: the gRPC order services on an
// event log in NATS JetStream. With no NATS_URL it starts an embedded
// nats-server in DATA_DIR, so `go run ./cmd/ordersd` is the whole system.
// Configuration is environment variables; see the README's table.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/orderstream/orderstream/internal/app"
	"github.com/orderstream/orderstream/internal/config"
	"github.com/orderstream/orderstream/internal/telemetry"
	"golang.org/x/term"
)

func main() {
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ordersd: configuration:", err)
		os.Exit(2)
	}
	log := newLogger(cfg)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Run(ctx, cfg, log, nil); err != nil {
		log.Error("ordersd failed", "err", err)
		stop()
		os.Exit(1)
	}
}

// newLogger writes JSON for machines and text for a person at a terminal.
func newLogger(cfg config.Config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	var h slog.Handler = slog.NewJSONHandler(os.Stderr, opts)
	if term.IsTerminal(int(os.Stderr.Fd())) {
		h = slog.NewTextHandler(os.Stderr, opts)
	}
	return slog.New(telemetry.NewLogHandler(h))
}
