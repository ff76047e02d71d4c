package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/otelstore"
	"github.com/orderstream/orderstream/internal/natsconn"
	"github.com/orderstream/orderstream/internal/natsembed"
	"github.com/orderstream/orderstream/internal/telemetry"
	"go.opentelemetry.io/otel/metric"
)

// connectNATS connects to NATS_URL, or starts the embedded server in
// DATA_DIR when there is none, and waits until the connection is up.
func (n *node) connectNATS(ctx context.Context) error {
	cfg := n.cfg
	natsURL := cfg.NATSURL
	var natsOpts []nats.Option
	if natsURL == "" {
		ns, err := natsembed.Start(natsembed.Options{
			Listen:     cfg.NATSListen,
			StoreDir:   filepath.Join(cfg.DataDir, "nats"),
			SyncAlways: cfg.NATSSync == "always",
			Log:        n.log,
		})
		if err != nil {
			if errors.Is(err, natsembed.ErrListen) {
				return fmt.Errorf("NATS_LISTEN: %w", err)
			}
			return fmt.Errorf("NATS_LISTEN %s, DATA_DIR %s: %w", cfg.NATSListen, cfg.DataDir, err)
		}
		// Pushed before everything that uses it, so shut down after it all.
		n.down.push(func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		})
		n.addrs.NATS = ns.Addr().String()
		// In-process connection: no TCP hop between the services and
		// their own embedded server.
		natsOpts = append(natsOpts, nats.InProcessServer(ns))
		natsURL = ns.ClientURL()
	}
	nc, err := natsconn.Connect(natsconn.Options{
		URLs: natsURL, CredsFile: cfg.NATSCreds, NKeySeedFile: cfg.NATSNKey, User: cfg.NATSUser, Password: cfg.NATSPassword,
		CAFile: cfg.NATSCA, CertFile: cfg.NATSCert, KeyFile: cfg.NATSKey, Name: "ordersd-" + strings.Join(cfg.Roles, "-"),
	}, n.log, natsOpts...)
	if err != nil {
		return err
	}
	n.down.push(nc.Close)
	n.nc = nc
	wctx, wcancel := context.WithTimeout(ctx, cfg.NATSConnectTimeout)
	err = natsconn.WaitConnected(wctx, nc)
	wcancel()
	if err != nil {
		return err // it names NATS_URL
	}
	if n.js, err = jetstream.New(nc); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	return nil
}

// replicasNotClustered is the JetStream API's error code for a stream of
// more than one replica on a server that is not in a cluster: nats.go
// names no constant for it, the server (linked in for the embedded one)
// does.
const replicasNotClustered = jetstream.ErrorCode(server.JSStreamReplicasNotSupportedErr)

// replicasError is STREAM_REPLICAS refused by a NATS server that is not
// clustered, for any stream or bucket start-up opens: no retry mends it.
type replicasError struct {
	replicas int
	err      error
}

func (e replicasError) Error() string {
	return fmt.Sprintf("STREAM_REPLICAS: %d replicas, but the NATS server at NATS_URL is not clustered: %v", e.replicas, e.err)
}

func (e replicasError) Unwrap() error { return e.err }

// openStore opens the event store. A cluster that is still electing its
// JetStream leader leaves API requests unanswered, and one whose servers
// are not all online yet cannot place a replicated stream: only
// ErrUnavailable is retried (retryStartup).
func (n *node) openStore(ctx context.Context) error {
	format, err := eventstore.ParseHeaderFormat(n.cfg.EventHeaders)
	if err != nil {
		return fmt.Errorf("EVENT_HEADERS: %w", err)
	}
	opts := []eventstore.Option{eventstore.WithHeaderFormat(format),
		eventstore.WithReplicas(n.cfg.StreamReplicas), eventstore.WithDuplicateWindow(n.cfg.DuplicateWindow)}
	if !n.cfg.Has("command") {
		// The role that appends owns the stream's replicas and duplicate
		// window: a process of another role (a gateway, a payments node)
		// started without STREAM_REPLICAS or DUPLICATE_WINDOW would
		// otherwise bring the stream back to the defaults. Its settings
		// still create the stream when it starts first, replicated.
		opts = append(opts, eventstore.WithSettingsKept())
	}
	err = n.retryStartup(ctx, "event store", func(err error) bool { return !errors.Is(err, eventstore.ErrUnavailable) },
		func(ctx context.Context) (err error) {
			n.store, err = eventstore.New(ctx, n.js, opts...)
			return err
		})
	if errors.As(err, new(replicasError)) {
		return err
	}
	if err != nil {
		return fmt.Errorf("event store: %w", err)
	}
	if err := n.store.Immutable(); err != nil {
		// The system of record must not lose events; the server would
		// not let the stream be made immutable, so an operator must act.
		n.log.Error("the event log is not immutable: events can be removed from it", "err", err)
	}
	return nil
}

// retryStartup runs attempt, each try bounded to 3 s and tries 250 ms
// apart, until it succeeds, fails with an error permanent reports (or a
// replicasError, which names STREAM_REPLICAS), the
// connect timeout (NATS_CONNECT_TIMEOUT) has passed, or ctx ends: what
// start-up needs from a cluster that is still coming up. It returns the
// last error; each one it retries is logged as what not reachable yet.
func (n *node) retryStartup(ctx context.Context, what string, permanent func(error) bool, attempt func(context.Context) error) error {
	deadline := time.Now().Add(n.cfg.NATSConnectTimeout)
	for {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := attempt(actx)
		cancel()
		if apiErr := (*jetstream.APIError)(nil); errors.As(err, &apiErr) && apiErr.ErrorCode == replicasNotClustered {
			return replicasError{n.cfg.StreamReplicas, err}
		}
		if err == nil || permanent(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		n.log.Warn(what+" not reachable yet, retrying", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// startTelemetry sets up tracing and metrics, the NATS connection's
// metrics and the traced event store the services use.
func (n *node) startTelemetry(ctx context.Context, opts []telemetry.Option) error {
	tel, err := telemetry.Setup(ctx, "ordersd", append(opts, telemetry.WithErrorLog(n.log))...)
	if err != nil {
		return err
	}
	n.down.push(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			n.log.Warn("telemetry shutdown", "err", err)
		}
	})
	n.tel = tel
	if err := natsMetrics(tel, n.nc); err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	if n.traced, err = otelstore.Wrap(n.store, tel.Tracer, tel.Meter); err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	return nil
}

// baseChecks are the readiness checks of every process: NATS answers, the
// log answers, and (advisory) the log is immutable.
func (n *node) baseChecks() []Check {
	nc, store := n.nc, n.store
	return []Check{
		{Name: "nats", Fn: func(ctx context.Context) error {
			if !nc.IsConnected() {
				return errors.New("not connected: " + nc.Status().String())
			}
			// The status still says connected for a moment after the
			// server goes away, until the read loop sees the socket
			// close; a round trip answers for the server itself.
			if err := nc.FlushWithContext(ctx); err != nil {
				return errors.New("no round trip to the server")
			}
			return nil
		}},
		{Name: "stream", Fn: streamCheck(n.log, store)},
		// Advisory: a log that allows deletes still serves, but an operator
		// must know that history can be lost.
		{Name: "stream_immutable", Advisory: true, Fn: func(context.Context) error { return store.Immutable() }},
	}
}

// streamCheck is the readiness check that the log answers. Probes get no
// internal text (the store's errors name its requests and the server's
// answers); the log gets the error when the check starts failing or fails
// otherwise, and a line when it passes again, not one per evaluation.
func streamCheck(log *slog.Logger, store *eventstore.Store) func(context.Context) error {
	var mu sync.Mutex
	last := ""
	return func(ctx context.Context) error {
		_, err := store.Head(ctx)
		if err != nil && errors.Is(ctx.Err(), context.Canceled) {
			// The evaluation was ended (a shutdown stops the health
			// loop): that says nothing of the log, and logged as an
			// outage it sent people after NATS for a routine stop. One
			// that ran out of its time (a log that does not answer) is
			// an outage.
			return ctx.Err()
		}
		text := ""
		if err != nil {
			text = err.Error()
		}
		mu.Lock()
		changed := text != last
		last = text
		mu.Unlock()
		switch {
		case changed && err != nil:
			log.Warn("readiness: the event log does not answer", "err", err)
		case changed:
			log.Info("readiness: the event log answers again")
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, eventstore.ErrUnavailable):
			return errors.New("the event log does not answer (see the log)")
		default:
			return errors.New("the event log cannot be read (see the log)")
		}
	}
}

// natsMetrics exports the NATS connection's state: whether it is
// connected, and how often it reconnected.
func natsMetrics(tel *telemetry.Telemetry, nc *nats.Conn) error {
	m := tel.Meter.Meter("github.com/orderstream/orderstream/internal/app")
	up, err := m.Int64ObservableGauge("orders.nats.connected", metric.WithDescription("1 while connected to NATS, else 0."))
	if err != nil {
		return err
	}
	reconnects, err := m.Int64ObservableCounter("orders.nats.reconnects", metric.WithDescription("Reconnections to NATS."))
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		v := int64(0)
		if nc.IsConnected() {
			v = 1
		}
		o.ObserveInt64(up, v)
		o.ObserveInt64(reconnects, int64(nc.Stats().Reconnects))
		return nil
	}, up, reconnects)
	return err
}
