// Package bucket keeps small records by key in a JetStream key-value bucket,
// next to the event store: state a process manager needs beside the log
// (the payments manager's parked jobs), persisted by the same servers and,
// given the event stream's replicas (WithReplicas), replicated like it: a
// record must outlive the loss of a server as the events it stands beside
// do. Only the latest value of a key is kept.
//
// A value read with its revision (Read) can be replaced or removed only if
// no other caller wrote or removed it since (Update, DeleteAt): how
// processes sharing a bucket keep from overwriting each other.
//
// Errors: ErrExists, ErrNotFound, ErrChanged, ErrInvalidOption and
// ErrInvalidKey, checked with errors.Is; others wrap the NATS error,
// prefixed by the operation, and eventstore.ErrUnavailable when NATS gave
// no usable answer (as the event store classifies it).
package bucket

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/internal/streamcfg"
)

var (
	// ErrExists reports a Create of a key that holds a value.
	ErrExists = errors.New("bucket: key exists")
	// ErrNotFound reports a Get of a key without a value.
	ErrNotFound = errors.New("bucket: key not found")
	// ErrChanged reports an Update or DeleteAt of a key written or
	// removed by another caller since it was read.
	ErrChanged = errors.New("bucket: key changed meanwhile")
	// ErrInvalidOption reports an option of Open given a value it does
	// not accept.
	ErrInvalidOption = errors.New("bucket: invalid option")
	// ErrInvalidKey reports a key the bucket cannot hold (see Remove).
	ErrInvalidKey = errors.New("bucket: invalid key")
)

// Bucket is one key-value bucket. It is safe for concurrent use.
type Bucket struct {
	kv jetstream.KeyValue
	// stream holds the bucket, for Remove; subjects is its keys' subject
	// prefix.
	stream   jetstream.Stream
	subjects string
	// nc, msgGet and wait are for its leader's message gets (more).
	nc     *nats.Conn
	msgGet string
	wait   time.Duration
}

type config struct {
	description string
	replicas    int
}

// Option configures Open. An option given a value it does not accept makes
// Open fail with an error wrapping ErrInvalidOption; each option says which
// values those are.
type Option func(*config) error

// WithDescription describes the bucket to operators.
func WithDescription(d string) Option {
	return func(c *config) error { c.description = d; return nil }
}

// WithReplicas sets the bucket's replicas (default 1); use the event
// stream's, so that the bucket survives what the log survives. Invalid:
// outside 1..5. More than one needs a JetStream cluster.
func WithReplicas(n int) Option {
	return func(c *config) error { return streamcfg.SetReplicas(&c.replicas, n, ErrInvalidOption) }
}

// Open returns the bucket name, creating it, or updating it to opts. An
// existing bucket is brought to the replicas asked for (default 1), as the
// event store and the buckets and streams beside it bring theirs: the
// configuration decides, so a deployment that moves to a cluster has its
// bucket scaled up on the next start, and one started with fewer replicas
// scales it down. It returns the error of an invalid option (wrapping
// ErrInvalidOption) or name, or the server's, such as one refusing more
// replicas than the cluster has servers.
func Open(ctx context.Context, js jetstream.JetStream, name string, opts ...Option) (*Bucket, error) {
	c := config{replicas: 1}
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: name, Description: c.description, History: 1, Replicas: c.replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("bucket: open %s: %w", name, err)
	}
	st, err := js.Stream(ctx, "KV_"+name)
	if err != nil {
		return nil, fmt.Errorf("bucket: open %s: %w", name, err)
	}
	return &Bucket{kv: kv, stream: st, subjects: "$KV." + name + ".", nc: js.Conn(),
		msgGet: streamcfg.MsgGetSubject(js.Options(), "KV_"+name), wait: js.Options().DefaultTimeout}, nil
}

// Create stores value under key if the key holds no value; ErrExists if it
// does.
func (b *Bucket) Create(ctx context.Context, key string, value []byte) error {
	_, err := b.kv.Create(ctx, key, value)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("%w: %s", ErrExists, key)
	}
	return wrapWrite("create", key, err)
}

// Put stores value under key, replacing what it held.
func (b *Bucket) Put(ctx context.Context, key string, value []byte) error {
	_, err := b.kv.Put(ctx, key, value)
	return wrapWrite("put", key, err)
}

// Get returns the value of key; ErrNotFound when it holds none.
func (b *Bucket) Get(ctx context.Context, key string) ([]byte, error) {
	e, err := b.entry(ctx, "get", key)
	if err != nil {
		return nil, err
	}
	return e.Value(), nil
}

// entry reads key's entry for op: ErrNotFound when it holds no value.
func (b *Bucket) entry(ctx context.Context, op, key string) (jetstream.KeyValueEntry, error) {
	e, err := b.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	if err != nil {
		return nil, wrap(op, key, err)
	}
	return e, nil
}

// Read returns the value of key and its revision, for Update and
// DeleteAt; ErrNotFound when it holds none.
func (b *Bucket) Read(ctx context.Context, key string) (value []byte, revision uint64, err error) {
	e, err := b.entry(ctx, "read", key)
	if err != nil {
		return nil, 0, err
	}
	return e.Value(), e.Revision(), nil
}

// Update replaces the value of key if it is still at revision, and
// returns the new revision; ErrChanged when another caller wrote or
// removed it since.
func (b *Bucket) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	rev, err := b.kv.Update(ctx, key, value, revision)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, fmt.Errorf("%w: %s", ErrChanged, key)
	}
	return rev, wrapWrite("update", key, err)
}

// DeleteAt removes the value of key if it is still at revision;
// ErrChanged when another caller wrote or removed it since.
func (b *Bucket) DeleteAt(ctx context.Context, key string, revision uint64) error {
	err := b.kv.Delete(ctx, key, jetstream.LastRevision(revision))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("%w: %s", ErrChanged, key)
	}
	return wrapWrite("delete", key, err)
}

// Delete removes the value of key; deleting a key without a value is not
// an error.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	return wrapWrite("delete", key, b.kv.Delete(ctx, key))
}

// Remove removes key and its value without leaving a delete marker, as
// Delete does: for keys written once each (one per job, say), whose
// markers would otherwise pile up in the bucket for good, each read again
// by every listing of its keys. Unlike Delete it is a request to the
// stream's API, not a write beside the values; removing a key without a
// value is not an error. Invalid keys are refused (ErrInvalidKey). (A
// purge marker with a TTL of its own would be a plain write, but needs
// the bucket's stream to allow message TTLs, which the server never lets
// a stream give up again: a build before it could then no longer open the
// bucket, in a rolling upgrade or a rollback.)
func (b *Bucket) Remove(ctx context.Context, key string) error {
	if !validKey(key) {
		return fmt.Errorf("%w: %q", ErrInvalidKey, key)
	}
	return wrapWrite("remove", key, b.stream.Purge(ctx, jetstream.WithPurgeSubject(b.subjects+key)))
}

// validKey reports whether key is one the bucket takes: dot-separated
// tokens of A-Z, a-z, 0-9, '-', '/', '_' and '='. The check matters to
// Remove, whose key becomes a subject filter: a wildcard would remove
// other keys.
func validKey(key string) bool {
	if key == "" || strings.HasPrefix(key, ".") || strings.HasSuffix(key, ".") || strings.Contains(key, "..") {
		return false
	}
	for _, r := range key {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("-/_=.", r)) {
			return false
		}
	}
	return true
}

// Keys returns the keys holding a value, as of the call. A listing cut
// short by ctx returns ctx's error, and one cut short by its watch ending
// (the connection closed, the server refusing its consumer) ErrUnavailable,
// rather than part of the keys.
func (b *Bucket) Keys(ctx context.Context) ([]string, error) {
	// Deletes are watched too (and left out below): their revisions say
	// how far the watch has come (more).
	w, err := b.kv.WatchAll(ctx, jetstream.MetaOnly())
	if err != nil {
		return nil, wrap("list keys", "", err)
	}
	defer func() { _ = w.Stop() }()
	keys, err := collectKeys(ctx, w.Updates(), listingIdle, b.more)
	return keys, wrap("list keys", "", err)
}

// more reports whether the bucket's stream holds a message after revision
// after: a key the watch has yet to deliver. Its leader says, which every
// write has reached: a replica behind it (a direct get's) could say
// nothing is left, and the listing would end short.
func (b *Bucket) more(ctx context.Context, after uint64) (bool, error) {
	_, found, err := streamcfg.LeaderGet(ctx, b.nc, b.msgGet, streamcfg.MsgGetRequest{Seq: after + 1, NextFor: b.subjects + ">", NoHeaders: true}, b.wait)
	return found, err
}

// listingIdle is how long a listing waits for its watch's next key before
// it asks the stream whether one is still to come (more).
const listingIdle = time.Second

// errListingCut is a listing whose watch ended before it had every key.
var errListingCut = fmt.Errorf("%w: the watch ended before every key was listed", eventstore.ErrUnavailable)

// collectKeys takes the keys of the values updates delivers until its nil,
// which says every key held at the start was delivered. nats.go's own
// lister ends as quietly when the watch's channel closes half-way, and a
// caller took part of the keys for all of them (parked jobs left out of a
// listing).
//
// nats.go sends the nil once it has delivered as many messages as the
// watch's consumer had pending when it was made, or one with none pending
// after it. A key removed without a marker (Remove) after that count and
// before its delivery is never delivered, so the nil never came: the
// listing waited for ever, on a bucket nobody wrote to. After idle without
// a word the stream is asked whether anything follows what was delivered
// (more); nothing does, the listing is whole.
func collectKeys(ctx context.Context, updates <-chan jetstream.KeyValueEntry, idle time.Duration,
	more func(ctx context.Context, after uint64) (bool, error)) ([]string, error) {
	var keys []string
	var last uint64 // the revision of the last message delivered
	quiet := time.NewTimer(idle)
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-quiet.C:
			switch left, err := more(ctx, last); {
			case err != nil:
				return nil, err
			case !left:
				return keys, nil
			}
			quiet.Reset(idle)
		case e, ok := <-updates:
			switch {
			case !ok:
				return nil, errListingCut
			case e == nil:
				return keys, nil
			}
			last = e.Revision()
			if e.Operation() == jetstream.KeyValuePut {
				keys = append(keys, e.Key())
			}
			quiet.Reset(idle)
		}
	}
}

// wrap prefixes a read's err with op and key, classifying an outage of
// NATS as the event store does (eventstore.Unavailable): a caller answers
// UNAVAILABLE (retry later) rather than INTERNAL, or DEADLINE_EXCEEDED for
// a deadline the NATS client set, not the caller.
func wrap(op, key string, err error) error { return wrapErr(op, key, err, false) }

// wrapWrite is wrap for a write, whose timeout is not an outage: a write
// that got no answer in time may have been applied, and retried as
// unavailable a settle whose removal went through would be answered "not
// parked". Its caller decides what that means.
func wrapWrite(op, key string, err error) error { return wrapErr(op, key, err, true) }

func wrapErr(op, key string, err error, write bool) error {
	if err == nil {
		return nil
	}
	if key != "" {
		op += " " + key
	}
	answerLost := write && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout))
	if eventstore.Unavailable(err) && !errors.Is(err, eventstore.ErrUnavailable) && !answerLost {
		return fmt.Errorf("bucket: %s: %w: %w", op, eventstore.ErrUnavailable, err)
	}
	return fmt.Errorf("bucket: %s: %w", op, err)
}
