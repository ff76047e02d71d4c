package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore/keys"
	"github.com/orderstream/orderstream/internal/config"
	"github.com/orderstream/orderstream/internal/pii"
	"github.com/orderstream/orderstream/services/command"
)

// openKeyring opens the keyring of customers' data keys for the roles that
// see personal data (command, query, audit); see newKeyring.
func (n *node) openKeyring(ctx context.Context) error {
	if !n.cfg.Has("command") && !n.cfg.Has("query") && !n.cfg.Has("audit") {
		return nil
	}
	// A replicated bucket just created has no leader for a moment, and
	// a cluster may still be electing: every error is retried but an
	// unusable master key.
	err := n.retryStartup(ctx, "personal data keys", func(err error) bool {
		var master *masterKeyError
		return errors.As(err, &master)
	}, func(ctx context.Context) error {
		ring, stop, err := newKeyring(ctx, n.js, n.cfg, n.log)
		if err == nil {
			n.ring = ring
			n.down.push(stop)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("personal data keys: %w", err)
	}
	return nil
}

// masterKeyError is a PII_MASTER_KEY_FILE that cannot be used: retrying
// does not help.
type masterKeyError struct{ err error }

func (e *masterKeyError) Error() string { return "PII_MASTER_KEY_FILE: " + e.err.Error() }
func (e *masterKeyError) Unwrap() error { return e.err }

// commandOptions are the command service's options in this process.
func (n *node) commandOptions() []command.Option {
	opts := []command.Option{command.WithLogger(n.log), command.WithHistories(n.cfg.CommandHistories)}
	if n.ring != nil {
		opts = append(opts, command.WithKeyring(n.ring))
	}
	return opts
}

// newKeyring returns the keyring of customers' data keys: the master key
// from PII_MASTER_KEY_FILE (or the development one kept in the bucket), the
// keys bucket replicated like the stream (set by the command role), and a watch that drops keys other
// processes erase from this process's cache. stop ends the watch.
func newKeyring(ctx context.Context, js jetstream.JetStream, cfg config.Config, log *slog.Logger) (ring *pii.Keyring, stop func(), err error) {
	var opts []keys.Option
	if cfg.Has("command") {
		// The command role owns the bucket's settings (see openStore).
		opts = append(opts, keys.WithReplicas(cfg.StreamReplicas))
	}
	store, err := keys.Open(ctx, js, opts...)
	if err != nil {
		return nil, nil, err
	}
	var master *pii.MasterKey
	if cfg.PIIMasterKeyFile != "" {
		if master, err = pii.LoadMasterKey(cfg.PIIMasterKeyFile); err != nil {
			return nil, nil, &masterKeyError{err}
		}
	} else {
		raw, created, err := store.DevMasterKey(ctx)
		if err != nil {
			return nil, nil, err
		}
		if master, err = pii.NewMasterKey(raw); err != nil {
			return nil, nil, err
		}
		log.Warn("PII_MASTER_KEY_FILE is not set: personal data is sealed under a development master key kept beside the keys it wraps; set it for anything but development",
			"generated", created, "bucket", keys.DefaultBucket)
	}
	ring = pii.NewKeyring(store, master)
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done, err := store.WatchErased(wctx, ring.Drop)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return ring, func() { cancel(); <-done }, nil
}
