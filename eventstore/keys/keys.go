// Package keys stores customers' wrapped data keys (see internal/pii) in a
// JetStream key-value bucket, one entry per customer, replicated like the
// event stream.
//
// An entry's key is the customer id in unpadded base64url (customer ids may
// hold characters a KV key may not); its value is the wrapped data key; its
// revision (the bucket stream's sequence, which only grows) is the key's
// version.
//
// Erasure is physical. Deleting or purging a KV entry only marks its
// message deleted: the bytes stay in the stream's message block until the
// block is compacted. Erase instead overwrites every stored revision of the
// entry in place with random bytes (JetStream's secure delete,
// Stream.SecureDeleteMsg), then writes a delete marker, which holds no
// value, so that other processes watching the bucket (WatchErased) drop the
// key from their caches. On a replicated bucket each replica overwrites
// its copy; the replication log of a clustered server holds the original
// write until the log is compacted by its next snapshot.
package keys

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore/internal/streamcfg"
	"github.com/orderstream/orderstream/internal/pii"
)

// DefaultBucket is the bucket's default name.
const DefaultBucket = "ORDERS_KEYS"

// Store is a pii.Store on a JetStream KV bucket.
type Store struct {
	kv     jetstream.KeyValue
	js     jetstream.JetStream
	stream jetstream.Stream
	nc     *nats.Conn
	// subjects is the prefix of the entries' subjects, msgGet the subject
	// of the bucket's message get, which only its stream leader answers.
	subjects, msgGet string
}

// Option configures Open. An option given a value it does not accept makes
// Open fail with an error wrapping ErrInvalidOption; each option says which
// values those are.
type Option func(*config) error

// ErrInvalidOption reports an option of Open given a value it does not
// accept.
var ErrInvalidOption = errors.New("keys: invalid option")

type config struct {
	bucket   string
	replicas int
	// keepReplicas leaves an existing bucket's replicas as they are.
	keepReplicas bool
	storage      jetstream.StorageType
}

// WithBucket names the bucket (default DefaultBucket). Invalid: a name
// that is not a valid bucket name (letters, digits, '-' and '_' only).
func WithBucket(name string) Option {
	return func(c *config) error {
		if name == "" || strings.IndexFunc(name, func(r rune) bool {
			return !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		}) >= 0 {
			return fmt.Errorf("%w: WithBucket(%q): letters, digits, '-' and '_' only", ErrInvalidOption, name)
		}
		c.bucket = name
		return nil
	}
}

// WithReplicas sets the bucket's replicas (default 1), for a bucket Open
// creates and, unless WithReplicasKept, an existing one; use the event
// stream's. Invalid: outside 1..5.
func WithReplicas(n int) Option {
	return func(c *config) error { return streamcfg.SetReplicas(&c.replicas, n, ErrInvalidOption) }
}

// WithReplicasKept leaves an existing bucket's replicas as they are,
// whatever WithReplicas says, which still sets up a bucket Open creates:
// for a process that does not own the bucket's settings.
func WithReplicasKept() Option {
	return func(c *config) error {
		c.keepReplicas = true
		return nil
	}
}

// WithStorage sets the bucket's storage (default file). Invalid: anything
// but jetstream.FileStorage and jetstream.MemoryStorage.
func WithStorage(st jetstream.StorageType) Option {
	return func(c *config) error { return streamcfg.SetStorage(&c.storage, st, ErrInvalidOption) }
}

// ErrDenyDelete reports a bucket whose stream refuses single-message
// deletes, as one made by jetstream's CreateKeyValue does; the server does
// not let that be changed, so such a bucket cannot erase keys.
var ErrDenyDelete = errors.New("keys: the bucket's stream denies deletes")

// Open creates the bucket if needed (or updates its replicas, unless
// WithReplicasKept) and returns a
// store on it. The bucket's stream is created here rather than by
// jetstream's CreateKeyValue, which makes it deny the deletes Erase needs.
// Errors are the server's, ErrDenyDelete, or one wrapping ErrInvalidOption
// for an invalid option.
func Open(ctx context.Context, js jetstream.JetStream, opts ...Option) (*Store, error) {
	c := config{bucket: DefaultBucket, replicas: 1, storage: jetstream.FileStorage}
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	prefix := "$KV." + c.bucket + "."
	want := jetstream.StreamConfig{
		Name:        "KV_" + c.bucket,
		Description: "customers' wrapped data keys; erasing one shreds the customer's personal data",
		Subjects:    []string{prefix + ">"},
		// As a KV bucket of history 1, except that deletes are allowed.
		MaxMsgsPerSubject: 1, MaxMsgs: -1, MaxBytes: -1, MaxConsumers: -1,
		Storage: c.storage, Replicas: c.replicas, AllowRollup: true, AllowDirect: true,
		Duplicates: 2 * time.Minute, Discard: jetstream.DiscardNew,
	}
	st, err := js.CreateStream(ctx, want)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		st, err = existing(ctx, js, want, c.keepReplicas)
	}
	if err != nil {
		return nil, fmt.Errorf("keys: bucket %s: %w", c.bucket, err)
	}
	kv, err := js.KeyValue(ctx, c.bucket)
	if err != nil {
		return nil, fmt.Errorf("keys: bucket %s: %w", c.bucket, err)
	}
	return &Store{kv: kv, js: js, stream: st, nc: js.Conn(), subjects: prefix, msgGet: streamcfg.MsgGetSubject(js.Options(), want.Name)}, nil
}

// existing returns the bucket's stream made by another process, with its
// replicas brought to want's unless keep.
func existing(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig, keep bool) (jetstream.Stream, error) {
	st, err := js.Stream(ctx, want.Name)
	if err != nil {
		return nil, err
	}
	have := st.CachedInfo().Config
	if have.DenyDelete {
		return nil, ErrDenyDelete
	}
	if keep || have.Replicas == want.Replicas {
		return st, nil
	}
	have.Replicas = want.Replicas
	return js.UpdateStream(ctx, have)
}

// devMasterKey is the entry of the development master key. A '.' is never
// in a customer's entry key (unpadded base64url), so it cannot collide.
const devMasterKey = "dev.master-key"

// DevMasterKey returns the development master key kept in the bucket,
// generating it (pii.KeySize random bytes) on first use, race-safely;
// created reports that this call made it. It serves deployments without a
// configured master key, so that all their processes share one: a key kept
// beside the keys it wraps protects nothing against a reader of the bucket.
func (s *Store) DevMasterKey(ctx context.Context) (raw []byte, created bool, err error) {
	e, err := s.kv.Get(ctx, devMasterKey)
	if err == nil {
		return e.Value(), false, nil
	}
	if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, false, fmt.Errorf("keys: development master key: %w", err)
	}
	raw = make([]byte, pii.KeySize)
	_, _ = rand.Read(raw)
	if _, err := s.kv.Create(ctx, devMasterKey, raw); errors.Is(err, jetstream.ErrKeyExists) {
		return s.DevMasterKey(ctx)
	} else if err != nil {
		return nil, false, fmt.Errorf("keys: development master key: %w", err)
	}
	return raw, true, nil
}

// masterCheck is the entry of the master key's check value
// (pii.CheckMasterKey). Customers' entries are base64url, without '.'.
const masterCheck = "master.check"

var _ pii.CheckStore = (*Store)(nil)

// MasterCheck implements pii.CheckStore.
func (s *Store) MasterCheck(ctx context.Context) ([]byte, bool, error) {
	e, err := s.kv.Get(ctx, masterCheck)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("keys: master key check: %w", err)
	}
	return e.Value(), true, nil
}

// CreateMasterCheck implements pii.CheckStore.
func (s *Store) CreateMasterCheck(ctx context.Context, check []byte) error {
	_, err := s.kv.Create(ctx, masterCheck, check)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return pii.ErrExists
	}
	if err != nil {
		return fmt.Errorf("keys: master key check: %w", err)
	}
	return nil
}

// SomeKeys implements pii.CheckStore: the first n customers' keys the
// bucket lists.
func (s *Store) SomeKeys(ctx context.Context, n int) ([]pii.WrappedKey, error) {
	lister, err := s.kv.ListKeys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keys: list: %w", err)
	}
	defer func() { _ = lister.Stop() }()
	var out []pii.WrappedKey
	for k := range lister.Keys() {
		id, derr := base64.RawURLEncoding.DecodeString(k)
		if derr != nil || k == devMasterKey || k == masterCheck {
			continue
		}
		w, _, err := s.Get(ctx, string(id))
		if errors.Is(err, pii.ErrNotFound) {
			continue // erased since it was listed
		}
		if err != nil {
			return nil, err
		}
		if out = append(out, pii.WrappedKey{CustomerID: string(id), Wrapped: w}); len(out) == n {
			break
		}
	}
	return out, ctx.Err()
}

// MaxCustomerID is the longest customer id, in bytes, whose key the store
// keeps. Its entry key is part of a NATS subject, and the server answers
// a protocol line over 4 KB with an error that closes the connection for
// good, for every user of it (the event store's too): a longer id is
// refused here (ErrCustomerIDTooLong) rather than sent.
const MaxCustomerID = 1024

// ErrCustomerIDTooLong is the error of an operation on a customer id over
// MaxCustomerID bytes.
var ErrCustomerIDTooLong = errors.New("keys: customer id too long")

func entryKey(customerID string) (string, error) {
	if len(customerID) > MaxCustomerID {
		return "", fmt.Errorf("%w: %d bytes, at most %d", ErrCustomerIDTooLong, len(customerID), MaxCustomerID)
	}
	return base64.RawURLEncoding.EncodeToString([]byte(customerID)), nil
}

// Get implements pii.Store: pii.ErrNotFound when the customer has no key.
func (s *Store) Get(ctx context.Context, customerID string) ([]byte, uint64, error) {
	key, err := entryKey(customerID)
	if err != nil {
		return nil, 0, err
	}
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, pii.ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("keys: get: %w", err)
	}
	return e.Value(), e.Revision(), nil
}

var _ pii.LatestStore = (*Store)(nil)

// GetLatest is Get answered by the bucket's stream leader, which holds
// every key it acknowledged: a replicated bucket's replicas answer Get,
// and one that lags may not have a key created a moment ago.
// pii.Keyring asks it before it takes a key for erased. pii.ErrNotFound
// when the customer has no key (never had one, or it was erased); errors
// are the server's (no leader while it elects one), or the context's.
// Without a deadline on ctx it waits at most the JetStream context's
// default timeout, as Get does (the projection decodes the log without
// one).
func (s *Store) GetLatest(ctx context.Context, customerID string) ([]byte, uint64, error) {
	key, err := entryKey(customerID)
	if err != nil {
		return nil, 0, err
	}
	raw, found, err := streamcfg.LeaderGet(ctx, s.nc, s.msgGet, streamcfg.MsgGetRequest{LastFor: s.subjects + key}, s.js.Options().DefaultTimeout)
	switch {
	case err != nil:
		return nil, 0, fmt.Errorf("keys: get from the leader: %w", err)
	case !found:
		return nil, 0, pii.ErrNotFound
	}
	if op := raw.Header.Get(kvOperation); op == "DEL" || op == "PURGE" {
		return nil, 0, pii.ErrNotFound // the erase's marker
	}
	return raw.Data, raw.Sequence, nil
}

// Create implements pii.Store: pii.ErrExists when the customer has a key.
func (s *Store) Create(ctx context.Context, customerID string, wrapped []byte) (uint64, error) {
	key, err := entryKey(customerID)
	if err != nil {
		return 0, err
	}
	rev, err := s.kv.Create(ctx, key, wrapped)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, pii.ErrExists
	}
	if err != nil {
		return 0, fmt.Errorf("keys: create: %w", err)
	}
	return rev, nil
}

// Erase implements pii.Store: every stored revision of the customer's entry
// is overwritten on disk and removed. A revision already gone is skipped,
// and the delete marker is written even when none is left: an erase that
// failed or stopped before its marker is retried as a whole.
//
// The marker is written only on an entry with no revision left: the bucket
// keeps one message per customer, so a marker written over a key made
// since the revisions were read (by a command, in any process, that found
// none while the erase ran) would push that key out as an ordinary
// removal, its bytes left on disk where no secure delete reaches them. The
// erase then reads the revisions again and overwrites the new one too, up
// to eraseRounds times.
func (s *Store) Erase(ctx context.Context, customerID string) error {
	key, err := entryKey(customerID)
	if err != nil {
		return err
	}
	for round := 1; ; round++ {
		hist, err := s.kv.History(ctx, key)
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("keys: erase: %w", err)
		}
		for _, e := range hist {
			err := s.stream.SecureDeleteMsg(ctx, e.Revision())
			if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
				return fmt.Errorf("keys: erase revision %d: %w", e.Revision(), err)
			}
		}
		// A delete marker (no value) tells other processes' keyrings,
		// which watch the bucket (WatchErased), to drop the key from
		// their caches.
		marker := nats.NewMsg(s.subjects + key)
		marker.Header.Set(kvOperation, "DEL")
		_, err = s.js.PublishMsg(ctx, marker, jetstream.WithExpectLastSequencePerSubject(0))
		if err == nil {
			return nil
		}
		if !wrongLastSequence(err) || round == eraseRounds {
			return fmt.Errorf("keys: erase marker: %w", err)
		}
	}
}

// eraseRounds bounds how often Erase reads the revisions again because a
// key was made while it ran.
const eraseRounds = 5

// kvOperation is the header that marks a bucket's delete markers, as
// nats.go's KeyValue writes and reads them.
const kvOperation = "KV-Operation"

// wrongLastSequence reports the server's refusal of a publish whose
// expected last sequence of its subject was not the subject's (10164 on a
// replicated stream).
func wrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// AllCustomers is the customer id WatchErased gives fn when it cannot say
// which keys were erased: every cached key is then suspect.
const AllCustomers = ""

// ErrWatchLost is what WatchErased's lost is told when the watch ended
// before its context: nats.go gives an ordered consumer up when the server
// refuses to make it again after a reconnect or missed heartbeats (an
// account's consumer limit, the bucket's stream gone a while).
var ErrWatchLost = errors.New("keys: the watch of erased keys ended")

// rewatchEvery is how long WatchErased waits between attempts to make a
// lost watch again.
const rewatchEvery = time.Second

// WatchErased calls fn, from a goroutine of its own, with the customer id
// of every key erased after it returns, by any process, until ctx ends;
// done is closed then. The watch is in place when it returns. Errors are
// the server's, for this first watch.
//
// It calls fn for a key created too: the bucket keeps one message per
// customer, so a key created right after an erase replaces its marker, and
// a watch that was disconnected meanwhile resumes after the marker is gone.
// A key created is one a cache may hold an older version of.
//
// A watch lost later is made again, rewatchEvery apart, for as long as ctx
// lasts: a process whose watch ended would otherwise open and seal with
// keys erased since, until it restarted. fn is called with AllCustomers
// when the loss is seen and again once the watch is back, as erasures in
// between were not seen; lost, unless nil, is told why (ErrWatchLost, or
// the server's refusal of each attempt).
func (s *Store) WatchErased(ctx context.Context, fn func(customerID string), lost func(error)) (done <-chan struct{}, err error) {
	w, err := s.kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return nil, fmt.Errorf("keys: watch: %w", err)
	}
	if lost == nil {
		lost = func(error) {}
	}
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		for w != nil {
			relayErased(ctx, w, fn)
			if ctx.Err() != nil || s.closing() {
				// Ended, or its connection is (the process is
				// stopping): nothing to watch again with.
				return
			}
			fn(AllCustomers)
			lost(ErrWatchLost)
			if w = s.rewatch(ctx, lost); w != nil {
				fn(AllCustomers)
			}
		}
	}()
	return ch, nil
}

// relayErased calls fn with the customer of each update of w until w ends
// or ctx does, and stops w.
func relayErased(ctx context.Context, w jetstream.KeyWatcher, fn func(customerID string)) {
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				continue
			}
			if id, err := base64.RawURLEncoding.DecodeString(e.Key()); err == nil && len(id) > 0 {
				fn(string(id))
			}
		}
	}
}

// rewatch makes the watch again, rewatchEvery apart, telling lost of each
// refusal; nil once ctx ended.
func (s *Store) rewatch(ctx context.Context, lost func(error)) jetstream.KeyWatcher {
	t := time.NewTicker(rewatchEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if s.closing() {
			return nil
		}
		w, err := s.kv.WatchAll(ctx, jetstream.UpdatesOnly())
		if err == nil {
			return w
		}
		if ctx.Err() == nil {
			lost(fmt.Errorf("keys: watch again: %w", err))
		}
	}
}

// closing reports whether the store's connection is closed or draining,
// for good: a watch it ends is not lost but over.
func (s *Store) closing() bool {
	return s.nc != nil && (s.nc.IsClosed() || s.nc.IsDraining())
}
