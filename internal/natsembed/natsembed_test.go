package natsembed_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/natsembed"
)

// lines is a slog handler that hands every record's level and message to
// a channel.
type lines chan string

func (l lines) Enabled(context.Context, slog.Level) bool { return true }
func (l lines) Handle(_ context.Context, r slog.Record) error {
	select {
	case l <- r.Level.String() + " " + r.Message:
	default:
	}
	return nil
}
func (l lines) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l lines) WithGroup(string) slog.Handler      { return l }

// The embedded server's errors reach the process's log. Before, they were
// discarded for the life of the process: a store it could not recover or
// JetStream running out of resources left no line in ordersd's log.
func TestServerErrorsReachTheLog(t *testing.T) {
	got := make(lines, 256)
	ns, err := natsembed.Start(natsembed.Options{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), Log: slog.New(got)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	c, err := net.Dial("tcp", strings.TrimPrefix(ns.ClientURL(), "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Not the protocol: the server reports a parser error and drops us.
	if _, err := c.Write([]byte("NOT A NATS PROTOCOL LINE\r\n")); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l := <-got:
			if strings.HasPrefix(l, "ERROR nats-server: ") || strings.HasPrefix(l, "WARN nats-server: ") {
				return
			}
		case <-timeout:
			t.Fatal("no error or warning of the server reached the log")
		}
	}
}
