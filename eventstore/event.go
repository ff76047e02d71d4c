package eventstore

import (
	"fmt"
	"net/textproto"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Header names under which an event's type and metadata are stored. They are
// part of the stored format: renaming one orphans the history written before.
const (
	HeaderEventType = "Orders-Event-Type"
	HeaderRequestID = "Orders-Request-Id"
	// HeaderRequestFingerprint identifies the request behind the request id,
	// so that a retry can be told apart from another request reusing the id.
	HeaderRequestFingerprint = "Orders-Request-Fingerprint"
	HeaderCorrelationID      = "Orders-Correlation-Id"
	HeaderCausationID        = "Orders-Causation-Id"
	HeaderActor              = "Orders-Actor"
	HeaderOccurredAt         = "Orders-Occurred-At"
	HeaderHash               = "Orders-Hash"
	HeaderPrevHash           = "Orders-Prev-Hash"
	// HeaderVersion is the event's stream revision: its number in its
	// order's history, from 1. Append sets it.
	HeaderVersion = "Orders-Version"
	// HeaderTraceParent and HeaderTraceState are the W3C trace context names,
	// lower case as the W3C specifies, so standard propagators find them.
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
)

// MaxOrderIDLen is the longest order id accepted, in bytes. It keeps subjects
// (and so the server's per-subject index) small.
const MaxOrderIDLen = 64

// Metadata is the envelope of an event. It travels in NATS headers so that it
// can be read (routing, tracing, auditing) without decoding the payload.
// Empty fields are not written and read back empty.
type Metadata struct {
	RequestID string // Orders-Request-Id: the client's idempotency key of the command
	// Orders-Request-Fingerprint: a digest of the request the id named;
	// empty in events written before it was recorded.
	RequestFingerprint string
	CorrelationID      string    // Orders-Correlation-Id
	CausationID        string    // Orders-Causation-Id
	Actor              string    // Orders-Actor
	OccurredAt         time.Time // Orders-Occurred-At, stored as RFC 3339 with nanoseconds in UTC
	TraceParent        string    // traceparent (W3C trace context)
	TraceState         string    // tracestate (W3C trace context)
	Hash               string    // Orders-Hash (hex) of the audit hash chain; carried, never computed here
	PrevHash           string    // Orders-Prev-Hash (hex): the hash this event chains to, so a gap is told apart from an alteration
}

// EventData is one event to append. Data is opaque to the store.
type EventData struct {
	Type string // Orders-Event-Type; required
	Data []byte
	Meta Metadata
}

// Recorded is an event read back from the stream.
type Recorded struct {
	OrderID  string
	Position uint64 // stream sequence: the event's log position, global
	// Version is the event's stream revision: its number in its order's
	// history, from 1 (Orders-Version). Events written before versions were
	// recorded have none: Load numbers them by their place in the history,
	// other reads leave 0.
	Version uint64
	Type    string
	Data    []byte
	Meta    Metadata
	Time    time.Time // when the server stored the event
}

// AppendResult is the outcome of a successful Append.
type AppendResult struct {
	// Position is the log position of the last event appended, or, when
	// Duplicate, of the last event the original request appended: the
	// position to wait for in read models.
	Position uint64
	// Version is the order's stream revision after the append: the version
	// of its last event. For a Duplicate it is 0 when the original event
	// carries no version (written before versions were recorded).
	Version uint64
	// Duplicate reports that the request id had already been appended: nothing
	// new was written.
	Duplicate bool
}

// validateOrderID keeps order ids to a single subject token, so that one
// order can never address or match another order's events.
func validateOrderID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty", ErrInvalidOrderID)
	}
	if len(id) > MaxOrderIDLen {
		return fmt.Errorf("%w: %d bytes, at most %d allowed", ErrInvalidOrderID, len(id), MaxOrderIDLen)
	}
	for _, r := range id {
		if r == '.' || r == '*' || r == '>' || r == utf8.RuneError || unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("%w: %q contains %q", ErrInvalidOrderID, id, r)
		}
	}
	return nil
}

// checkHeaderValue refuses values nats.go would alter on the wire (it trims
// them and replaces line breaks), because a store must return what it was given.
func checkHeaderValue(name, v string) error {
	if strings.ContainsAny(v, "\r\n") || textproto.TrimString(v) != v {
		return fmt.Errorf("%w: %s value %q has line breaks or surrounding whitespace", ErrInvalidEvent, name, v)
	}
	return nil
}

// eventHeader builds the headers of one event, checking that each value
// survives the round trip.
func eventHeader(ev *EventData) (nats.Header, error) {
	if ev.Type == "" {
		return nil, fmt.Errorf("%w: empty event type", ErrInvalidEvent)
	}
	// Sized for every header an event can carry (the ones below, the
	// occurrence time, the message id Append adds and the expected sequence
	// the publish adds), with the values' one-element slices cut from one
	// array: an append builds this for every event, and a map that grows
	// and a slice per value add up.
	const most = 12
	h := make(nats.Header, most)
	vals := make([]string, 0, most)
	one := func(v string) []string {
		vals = append(vals, v)
		return vals[len(vals)-1 : len(vals) : len(vals)]
	}
	set := func(name, v string) error {
		if v == "" {
			return nil
		}
		if err := checkHeaderValue(name, v); err != nil {
			return err
		}
		h[name] = one(v)
		return nil
	}
	m := &ev.Meta
	for _, kv := range [...]struct{ k, v string }{
		{HeaderEventType, ev.Type},
		{HeaderRequestID, m.RequestID},
		{HeaderRequestFingerprint, m.RequestFingerprint},
		{HeaderCorrelationID, m.CorrelationID},
		{HeaderCausationID, m.CausationID},
		{HeaderActor, m.Actor},
		{HeaderTraceParent, m.TraceParent},
		{HeaderTraceState, m.TraceState},
		{HeaderHash, m.Hash},
		{HeaderPrevHash, m.PrevHash},
	} {
		if err := set(kv.k, kv.v); err != nil {
			return nil, err
		}
	}
	if !m.OccurredAt.IsZero() {
		h[HeaderOccurredAt] = one(m.OccurredAt.UTC().Format(time.RFC3339Nano))
	}
	return h, nil
}

// EncodeEvent returns the headers under which Append stores ev as the
// event at version of its order, and the bytes it takes in a stream message
// (headers and payload), which the server's max payload bounds. It fails,
// wrapping ErrInvalidEvent, for an event Append refuses. With
// RecordedFromMsg it lets another store of the same format (memstore) keep
// exactly what this one keeps.
func EncodeEvent(ev EventData, version uint64) (nats.Header, int, error) {
	h, err := eventHeader(&ev)
	if err != nil {
		return nil, 0, err
	}
	h[HeaderVersion] = []string{strconv.FormatUint(version, 10)}
	return h, headerSize(h) + len(ev.Data), nil
}

// recordedVersion reads the version header; 0 when there is none.
func recordedVersion(h nats.Header, seq uint64) (uint64, error) {
	v := h.Get(HeaderVersion)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%w: %s header %q at position %d", ErrMalformedEvent, HeaderVersion, v, seq)
	}
	return n, nil
}

// headerSize is the encoded size of h as nats.go writes it, so that size
// limits can be checked before anything is sent.
func headerSize(h nats.Header) int {
	if len(h) == 0 {
		return 0
	}
	n := len("NATS/1.0\r\n") + 2
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// RecordedFromMsg decodes one stored event from the parts of a stream
// message, whichever API delivered it. subject must be prefix + "." + order
// id, where prefix is the store's subject prefix (WithSubjectPrefix). h and
// data are referenced, not copied. It returns an error wrapping
// ErrMalformedEvent when the subject does not belong to prefix, the event type
// header is missing or the occurred-at or version header does not parse.
func RecordedFromMsg(subject string, seq uint64, t time.Time, h nats.Header, data []byte, prefix string) (Recorded, error) {
	orderID, ok := strings.CutPrefix(subject, prefix)
	if ok {
		orderID, ok = strings.CutPrefix(orderID, ".")
	}
	if !ok || orderID == "" || strings.Contains(orderID, ".") {
		return Recorded{}, fmt.Errorf("%w: subject %q at position %d is not under prefix %q", ErrMalformedEvent, subject, seq, prefix)
	}
	typ := h.Get(HeaderEventType)
	if typ == "" {
		return Recorded{}, fmt.Errorf("%w: no %s header at position %d", ErrMalformedEvent, HeaderEventType, seq)
	}
	r := Recorded{
		OrderID:  orderID,
		Position: seq,
		Type:     typ,
		Data:     data,
		Time:     t,
		Meta: Metadata{
			RequestID:          h.Get(HeaderRequestID),
			RequestFingerprint: h.Get(HeaderRequestFingerprint),
			CorrelationID:      h.Get(HeaderCorrelationID),
			CausationID:        h.Get(HeaderCausationID),
			Actor:              h.Get(HeaderActor),
			TraceParent:        h.Get(HeaderTraceParent),
			TraceState:         h.Get(HeaderTraceState),
			Hash:               h.Get(HeaderHash),
			PrevHash:           h.Get(HeaderPrevHash),
		},
	}
	v, err := recordedVersion(h, seq)
	if err != nil {
		return Recorded{}, err
	}
	r.Version = v
	if at := h.Get(HeaderOccurredAt); at != "" {
		ts, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			return Recorded{}, fmt.Errorf("%w: %s header %q at position %d: %w", ErrMalformedEvent, HeaderOccurredAt, at, seq, err)
		}
		r.Meta.OccurredAt = ts
	}
	return r, nil
}

// DecodeMsg decodes a message delivered by a JetStream consumer (for example
// a projection's own ordered consumer on StreamName()). Position and Time come
// from the message's JetStream metadata. prefix is the store's subject prefix.
// Errors wrap ErrMalformedEvent, as for RecordedFromMsg, or report that msg is
// not a JetStream message.
func DecodeMsg(msg jetstream.Msg, prefix string) (Recorded, error) {
	md, err := msg.Metadata()
	if err != nil {
		return Recorded{}, fmt.Errorf("%w: %w", ErrMalformedEvent, err)
	}
	return RecordedFromMsg(msg.Subject(), md.Sequence.Stream, md.Timestamp, msg.Headers(), msg.Data(), prefix)
}

// DecodeRawMsg decodes a message returned by Stream.GetMsg, direct get or
// jetstreamext.GetBatch. prefix is the store's subject prefix. Errors wrap
// ErrMalformedEvent, as for RecordedFromMsg.
func DecodeRawMsg(msg *jetstream.RawStreamMsg, prefix string) (Recorded, error) {
	return RecordedFromMsg(msg.Subject, msg.Sequence, msg.Time, msg.Header, msg.Data, prefix)
}

// recordedFromDirect decodes a direct get response, whose stream metadata
// is in Nats-* headers rather than in a reply subject.
func recordedFromDirect(m *nats.Msg, prefix string) (Recorded, error) {
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return Recorded{}, fmt.Errorf("%w: direct get %s header: %w", ErrMalformedEvent, jetstream.SequenceHeader, err)
	}
	ts, err := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
	if err != nil {
		return Recorded{}, fmt.Errorf("%w: direct get %s header at position %d: %w", ErrMalformedEvent, jetstream.TimeStampHeaer, seq, err)
	}
	return RecordedFromMsg(m.Header.Get(jetstream.SubjectHeader), seq, ts, m.Header, m.Data, prefix)
}
