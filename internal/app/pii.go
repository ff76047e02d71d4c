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
	if !n.handlesPersonalData() {
		return nil
	}
	// A replicated bucket just created has no leader for a moment, and
	// a cluster may still be electing: every error is retried, but a
	// master key that is not the keys'.
	wrongMaster := func(err error) bool { return errors.Is(err, pii.ErrWrongMasterKey) }
	err := n.retryStartup(ctx, "personal data keys", wrongMaster, func(ctx context.Context) error {
		ring, stop, err := newKeyring(ctx, n.js, n.cfg, n.master, n.log)
		if err == nil {
			n.ring = ring
			n.down.push(stop)
		}
		return err
	})
	if wrongMaster(err) {
		source := "PII_MASTER_KEY_FILE"
		if n.cfg.PIIMasterKeyFile == "" {
			source += " (not set: the development master key)"
		}
		return fmt.Errorf("%s: %w; the keys in %s were wrapped under another master key: give this process the one the others use", source, err, keys.DefaultBucket)
	}
	if err != nil {
		return fmt.Errorf("personal data keys: %w", err)
	}
	return nil
}

// handlesPersonalData reports whether this process's roles seal or open
// personal data: the command, query and audit roles.
func (n *node) handlesPersonalData() bool {
	return n.cfg.Has("command") || n.cfg.Has("query") || n.cfg.Has("audit")
}

// loadMasterKey reads PII_MASTER_KEY_FILE, when set, for a process whose
// roles seal or open personal data: with the other files start-up reads
// before it reaches NATS, so that a wrong path is told at once, before
// anything is created on the server.
func (n *node) loadMasterKey() error {
	if n.cfg.PIIMasterKeyFile == "" || !n.handlesPersonalData() {
		return nil
	}
	master, err := pii.LoadMasterKey(n.cfg.PIIMasterKeyFile)
	if err != nil {
		return fmt.Errorf("PII_MASTER_KEY_FILE: %w", err)
	}
	n.master = master
	return nil
}

// commandOptions are the command service's options in this process.
func (n *node) commandOptions() []command.Option {
	opts := []command.Option{command.WithLogger(n.log), command.WithHistories(n.cfg.CommandHistories)}
	if n.ring != nil {
		opts = append(opts, command.WithKeyring(n.ring))
	}
	return opts
}

// newKeyring returns the keyring of customers' data keys: master, the key
// from PII_MASTER_KEY_FILE (nil: the development one kept in the bucket), the
// keys bucket replicated like the stream (set by the command role), and a watch that drops keys other
// processes erase from this process's cache. stop ends the watch.
func newKeyring(ctx context.Context, js jetstream.JetStream, cfg config.Config, master *pii.MasterKey, log *slog.Logger) (ring *pii.Keyring, stop func(), err error) {
	opts := []keys.Option{keys.WithReplicas(cfg.StreamReplicas)}
	if !cfg.Has("command") {
		// The command role owns the bucket's settings (see openStore).
		opts = append(opts, keys.WithReplicasKept())
	}
	store, err := keys.Open(ctx, js, opts...)
	if err != nil {
		return nil, nil, err
	}
	if master == nil {
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
	if err := pii.CheckMasterKey(ctx, store, master); err != nil {
		return nil, nil, err
	}
	ring = pii.NewKeyring(store, master)
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done, err := store.WatchErased(wctx, ring.Drop, func(err error) {
		// Until it is back this process may open, and seal new data with,
		// keys forgotten since; every cached key was dropped.
		log.Error("personal data keys: the watch of erased keys was lost; watching again", "err", err)
	})
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return ring, func() { cancel(); <-done }, nil
}
