// Package chain computes and verifies the tamper-evident hash chain of each
// order's events.
//
// # Canonical layout, version 1
//
// The hash of an event is SHA-256 over these bytes, in order:
//
//	"orderstream-chain/v1\n"          the 21-byte version tag
//	prev                              32 bytes: the previous event's hash for
//	                                  the same order, or 32 zero bytes for the
//	                                  order's first event
//	field(order_id)
//	field(event_type)                 e.g. "OrderPlaced"
//	field(occurred_at)                RFC 3339 with nanoseconds, UTC, as
//	                                  Go's time.RFC3339Nano formats it
//	                                  (e.g. "2026-11-24T10:00:00.123456789Z")
//	field(actor)
//	field(request_id)
//	field(payload)                    the stored payload bytes, unchanged
//
// where field(x) is len(x) as a 4-byte big-endian unsigned integer followed
// by the bytes of x. Every string is UTF-8. The hash and the previous hash
// are stored with the event's metadata (eventstore.Metadata: the h and p
// fields of the Orders-Meta header, or the Orders-Hash and Orders-Prev-Hash
// headers of the separate layout), both as 64 lower-case hexadecimal digits.
//
// # Personal data and erasure
//
// payload is the stored bytes, as they are in the stream. For an event
// with personal data those bytes hold the personal fields only sealed
// (the Sealed envelope of events.proto: ciphertext under the customer's
// data key), so the hash covers the ciphertext, never the plain text.
// Forgetting a customer destroys the key and changes no stored byte: every
// chain verifies exactly as before, and the erased fields stay provably
// unaltered though unreadable. The CustomerForgotten events that record
// erasures form a chain of their own, on the subject of the reserved id
// "_customers".
//
// # Verification
//
// An order's events are checked in log order. For each event:
//
//  1. No hash or no previous hash: OUT_OF_CHAIN (written outside the
//     command side).
//  2. The hash recomputed from the event's content and its stored previous
//     hash differs from its stored hash: ALTERED (content or hash changed).
//  3. It records a version (its place in its order's history, kept with its
//     metadata) other than the place it is found at: MISSING (events before
//     it are gone or were added). This catches what the links miss when a
//     chain starts afresh after events written without hashes, or when the
//     last event is replaced by one claiming another place. Events written
//     before versions were recorded carry none and are not held to one.
//  4. Its stored previous hash is not the stored hash of the order's previous
//     event (zero for the first): MISSING (an event before it is gone).
//
// Only the first broken link of an order is reported. The command side's
// expected-revision check guarantees one chain per order, without forks.
//
// What a chain cannot show: a deleted last event (nothing follows it), an
// event forged consistently by someone who can write to the stream and knows
// this layout (keyed hashes or signatures would be needed for that), or a
// change to the metadata the layout leaves out: the correlation, causation
// and trace ids and the request fingerprint.
package chain

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/orderstream/orderstream/eventstore"
)

// Tag is the version tag that starts the hashed bytes.
const Tag = "orderstream-chain/v1\n"

// Zero is the previous hash of an order's first event, in hex.
var Zero = hex.EncodeToString(make([]byte, sha256.Size))

// Fields are the hashed parts of one event.
type Fields struct {
	OrderID    string
	Type       string
	OccurredAt time.Time
	Actor      string
	RequestID  string
	Payload    []byte
}

// FieldsOf returns the hashed parts of a recorded event.
func FieldsOf(r eventstore.Recorded) Fields {
	return Fields{OrderID: r.OrderID, Type: r.Type, OccurredAt: r.Meta.OccurredAt, Actor: r.Meta.Actor, RequestID: r.Meta.RequestID, Payload: r.Data}
}

// Compute returns the hex hash of an event chained to prevHex (Zero for an
// order's first event). It returns an error when prevHex is not 64 hex
// digits.
func Compute(prevHex string, f Fields) (string, error) {
	var prev [sha256.Size]byte
	if len(prevHex) != 2*sha256.Size {
		return "", fmt.Errorf("chain: previous hash %q is not %d hex bytes", prevHex, sha256.Size)
	}
	for i := range prev {
		hi, ok1 := unhex(prevHex[2*i])
		lo, ok2 := unhex(prevHex[2*i+1])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("chain: previous hash %q is not %d hex bytes", prevHex, sha256.Size)
		}
		prev[i] = hi<<4 | lo
	}
	// One buffer, on the stack for a typical event, hashed at once: the
	// append path computes this for every event it writes.
	var stack [512]byte
	b := append(stack[:0], Tag...)
	b = append(b, prev[:]...)
	b = field(b, f.OrderID)
	b = field(b, f.Type)
	at := len(b)
	b = append(b, 0, 0, 0, 0)
	b = f.OccurredAt.UTC().AppendFormat(b, time.RFC3339Nano)
	binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	b = field(b, f.Actor)
	b = field(b, f.RequestID)
	b = field(b, f.Payload)
	sum := sha256.Sum256(b)
	// Encoded on the stack: EncodeToString allocates twice.
	var h [2 * sha256.Size]byte
	hex.Encode(h[:], sum[:])
	return string(h[:]), nil
}

// field appends a length-prefixed field, so that no two different field
// lists hash the same bytes.
func field[T string | []byte](b []byte, v T) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

// unhex is one hex digit's value; hex.DecodeString would allocate.
func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Kind says how a link is broken.
type Kind int

// Kinds of broken links.
const (
	OutOfChain Kind = iota + 1
	Altered
	Missing
)

// String names the kind as reports print it: out-of-chain, altered, missing.
func (k Kind) String() string {
	switch k {
	case OutOfChain:
		return "out-of-chain"
	case Altered:
		return "altered"
	case Missing:
		return "missing"
	}
	return "unknown"
}

// Break is the first broken link of an order's chain.
type Break struct {
	OrderID  string
	Position uint64
	Version  uint32 // index of the event in the order, from 1
	Kind     Kind
	Detail   string
}

// Verifier checks chains incrementally, event by event in log order, for
// any number of orders. It keeps the last hash and event count per order,
// copied out of the events (whose strings share the message they were cut
// from): about 200 bytes an order.
type Verifier struct {
	orders map[string]chainState
}

// chainState is what a Verifier keeps of an order's chain.
type chainState struct {
	last   string // hash of the order's last event
	count  uint32 // events seen
	broken bool
}

// NewVerifier returns an empty Verifier.
func NewVerifier() *Verifier {
	return &Verifier{orders: map[string]chainState{}}
}

// Add checks the next event of its order. It returns a Break the first time
// an order's chain fails, and nil otherwise (also for later events of an
// already broken order).
func (v *Verifier) Add(r eventstore.Recorded) *Break {
	st, seen := v.orders[r.OrderID]
	id := r.OrderID
	if !seen {
		id = strings.Clone(id)
	}
	st.count++
	var b *Break
	if !st.broken {
		if b = check(r, st, seen); b != nil {
			st.broken = true
		}
		st.last = strings.Clone(r.Meta.Hash)
	}
	v.orders[id] = st
	return b
}

// check checks r, the event st.count of its order, whose chain so far is
// st (seen: the order had events before it).
func check(r eventstore.Recorded, st chainState, seen bool) *Break {
	brk := func(k Kind, format string, a ...any) *Break {
		return &Break{OrderID: r.OrderID, Position: r.Position, Version: st.count, Kind: k, Detail: fmt.Sprintf(format, a...)}
	}
	if r.Meta.Hash == "" || r.Meta.PrevHash == "" {
		return brk(OutOfChain, "event carries no chain hash")
	}
	got, err := Compute(r.Meta.PrevHash, FieldsOf(r))
	if err != nil {
		return brk(OutOfChain, "malformed previous hash")
	}
	if got != r.Meta.Hash {
		return brk(Altered, "content does not match its hash")
	}
	// The version an event records is its place in its order's history.
	// One that differs from where the event is found says events are
	// missing or were added, which the links alone miss when a chain
	// starts afresh after events written without hashes, or when the
	// last event is replaced. Events written before versions were
	// recorded carry none.
	if n := uint64(st.count); r.Version != 0 && r.Version != n {
		return brk(Missing, "recorded as version %d, found as event %d of its order: events are missing or were added", r.Version, n)
	}
	want := st.last
	if !seen {
		want = Zero
	}
	if r.Meta.PrevHash != want {
		if !seen {
			return brk(Missing, "chain starts from a previous hash: earlier events are missing")
		}
		return brk(Missing, "previous hash is not the hash of the order's previous event: an event is missing")
	}
	return nil
}

// Events returns how many events of orderID were added.
func (v *Verifier) Events(orderID string) uint32 { return v.orders[orderID].count }

// Orders returns how many orders were seen.
func (v *Verifier) Orders() int { return len(v.orders) }

// Verify checks one order's events, in order, and returns its first break
// or nil.
func Verify(recs []eventstore.Recorded) *Break {
	v := NewVerifier()
	for _, r := range recs {
		if b := v.Add(r); b != nil {
			return b
		}
	}
	return nil
}
