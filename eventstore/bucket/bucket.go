// Package bucket keeps small records by key in a JetStream key-value bucket,
// next to the event store: state a process manager needs beside the log
// (the payments manager's parked jobs), replicated and persisted by the same
// servers. Only the latest value of a key is kept.
//
// Errors: ErrExists and ErrNotFound, checked with errors.Is; others wrap the
// NATS error, prefixed by the operation.
package bucket

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

var (
	// ErrExists reports a Create of a key that holds a value.
	ErrExists = errors.New("bucket: key exists")
	// ErrNotFound reports a Get of a key without a value.
	ErrNotFound = errors.New("bucket: key not found")
)

// Bucket is one key-value bucket. It is safe for concurrent use.
type Bucket struct {
	kv jetstream.KeyValue
}

type config struct {
	description string
}

// Option configures Open.
type Option func(*config) error

// WithDescription describes the bucket to operators.
func WithDescription(d string) Option {
	return func(c *config) error { c.description = d; return nil }
}

// Open returns the bucket name, creating it (one replica), or updating it
// to opts. It returns the error of an invalid option or name, or the
// server's.
func Open(ctx context.Context, js jetstream.JetStream, name string, opts ...Option) (*Bucket, error) {
	var c config
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: name, Description: c.description, History: 1})
	if err != nil {
		return nil, fmt.Errorf("bucket: open %s: %w", name, err)
	}
	return &Bucket{kv: kv}, nil
}

// Create stores value under key if the key holds no value; ErrExists if it
// does.
func (b *Bucket) Create(ctx context.Context, key string, value []byte) error {
	_, err := b.kv.Create(ctx, key, value)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("%w: %s", ErrExists, key)
	}
	return wrap("create", key, err)
}

// Put stores value under key, replacing what it held.
func (b *Bucket) Put(ctx context.Context, key string, value []byte) error {
	_, err := b.kv.Put(ctx, key, value)
	return wrap("put", key, err)
}

// Get returns the value of key; ErrNotFound when it holds none.
func (b *Bucket) Get(ctx context.Context, key string) ([]byte, error) {
	e, err := b.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	if err != nil {
		return nil, wrap("get", key, err)
	}
	return e.Value(), nil
}

// Delete removes the value of key; deleting a key without a value is not
// an error.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	return wrap("delete", key, b.kv.Delete(ctx, key))
}

// Keys returns the keys holding a value, as of the call. A listing cut
// short by ctx returns ctx's error rather than part of the keys.
func (b *Bucket) Keys(ctx context.Context) ([]string, error) {
	lister, err := b.kv.ListKeys(ctx)
	if err != nil {
		return nil, wrap("list keys", "", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	if err := ctx.Err(); err != nil {
		return nil, wrap("list keys", "", err)
	}
	return keys, nil
}

func wrap(op, key string, err error) error {
	if err == nil {
		return nil
	}
	if key == "" {
		return fmt.Errorf("bucket: %s: %w", op, err)
	}
	return fmt.Errorf("bucket: %s %s: %w", op, key, err)
}
