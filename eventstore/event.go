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

// Header names under which an event's type and metadata are stored, one
// header per field, in SeparateHeaders and in every event written before
// HeaderMeta; traceparent and tracestate are written in both formats. They
// are part of the stored format: renaming one orphans the history written
// before.
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

// Metadata is the envelope of an event. It travels in NATS headers
// (HeaderMeta, or in the separate layout the Orders-* header named beside
// each field) so that it can be read (routing, tracing, auditing) without
// decoding the payload. Empty fields are not written and read back empty.
type Metadata struct {
	RequestID string // Orders-Request-Id: the client's idempotency key of the command
	// Orders-Request-Fingerprint: a digest of the request the id named;
	// empty in events written before it was recorded.
	RequestFingerprint string
	CorrelationID      string    // Orders-Correlation-Id
	CausationID        string    // Orders-Causation-Id
	Actor              string    // Orders-Actor
	OccurredAt         time.Time // Orders-Occurred-At, stored as RFC 3339 with nanoseconds in UTC
	TraceParent        string    // traceparent (W3C trace context), its own header in both layouts
	TraceState         string    // tracestate (W3C trace context), its own header in both layouts
	Hash               string    // Orders-Hash (hex) of the audit hash chain; carried, never computed here
	PrevHash           string    // Orders-Prev-Hash (hex): the hash this event chains to, so a gap is told apart from an alteration
}

// EventData is one event to append. Data is opaque to the store.
type EventData struct {
	Type string // Orders-Event-Type in the separate layout; required
	Data []byte
	Meta Metadata
}

// Recorded is an event read back from the stream.
type Recorded struct {
	OrderID  string
	Position uint64 // stream sequence: the event's log position, global
	// Version is the event's stream revision: its number in its order's
	// history, from 1 (HeaderMeta's v, Orders-Version in the separate
	// layout). Events written before versions were
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
	// Duplicate reports that the request's events were already in the log
	// when the append's last try reached the server (written by an earlier
	// call, or by an earlier try of this one that got no answer): that try
	// wrote nothing new.
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

// HeaderMeta carries an event's type, version and metadata in one header
// value: every reader of the log (the projection, the process managers, a
// rebuild) has its client parse every header of every message, and one
// header instead of ten takes about a quarter fewer bytes and halves what
// that parse allocates (BENCHMARKS.md). Events written before it carry the
// same fields as the separate Orders-* headers above, and are read as
// before.
//
// The value is "m1" followed by one field per set value, each a tag
// letter, the value's length in bytes in decimal, a colon and the value:
// t type, r request id, f request fingerprint, c correlation id, u
// causation id, a actor, o occurrence time (RFC 3339 with nanoseconds,
// UTC), h hash, p previous hash, v version. Each tag appears at most once.
// The version is required and comes last, so the value never ends in
// whitespace a header would lose. A reader skips fields whose tag it does
// not know, so a later layout can add some.
const HeaderMeta = "Orders-Meta"

// metaPrefix opens every HeaderMeta value; another layout would change it.
const metaPrefix = "m1"

// HeaderFormat is how Append writes an event's type and metadata. Every
// reader of this package reads both formats, whatever it writes.
type HeaderFormat int

const (
	// CompactHeaders writes them in one HeaderMeta header (the default).
	CompactHeaders HeaderFormat = iota
	// SeparateHeaders writes one Orders-* header per field, as builds
	// before HeaderMeta did and read. A deployment whose readers are not
	// all upgraded yet keeps its writers on it until they are.
	SeparateHeaders
)

// ParseHeaderFormat returns the format named "compact" or "separate", or an
// error wrapping ErrInvalidOption.
func ParseHeaderFormat(name string) (HeaderFormat, error) {
	switch name {
	case "compact":
		return CompactHeaders, nil
	case "separate":
		return SeparateHeaders, nil
	}
	return 0, fmt.Errorf("%w: event header format %q is not compact or separate", ErrInvalidOption, name)
}

// String returns the format's name, as ParseHeaderFormat takes it.
func (f HeaderFormat) String() string {
	if f == SeparateHeaders {
		return "separate"
	}
	return "compact"
}

// metaField is one of an event's string fields as both layouts store it:
// its tag in HeaderMeta and its header in the separate layout; metaString
// finds it in an event. The occurrence time and the version, which are not
// strings, are written and read beside these.
type metaField struct {
	tag  byte
	name string
}

// metaFields is every string field, in the order HeaderMeta writes them.
var metaFields = [...]metaField{
	{'t', HeaderEventType}, {'r', HeaderRequestID}, {'f', HeaderRequestFingerprint}, {'c', HeaderCorrelationID},
	{'u', HeaderCausationID}, {'a', HeaderActor}, {'h', HeaderHash}, {'p', HeaderPrevHash},
}

// metaString returns where metaFields[i] is in an event's type and
// metadata. A switch, not a table of functions: a call through a function
// value would move every decoded Recorded to the heap.
func metaString(i int, typ *string, m *Metadata) *string {
	switch i {
	case 0:
		return typ
	case 1:
		return &m.RequestID
	case 2:
		return &m.RequestFingerprint
	case 3:
		return &m.CorrelationID
	case 4:
		return &m.CausationID
	case 5:
		return &m.Actor
	case 6:
		return &m.Hash
	default:
		return &m.PrevHash
	}
}

// tagOccurredAt and tagVersion are the HeaderMeta tags of the two fields
// that are not strings.
const (
	tagOccurredAt = 'o'
	tagVersion    = 'v'
)

// metaIndex numbers every known tag from 1: a tag of metaFields by its
// index in it plus one, then the occurrence time and the version; 0 for
// the other tags. Tag number n is bit n-1 of the set decodeMeta has seen,
// so that a known field given twice is refused while unknown ones are
// skipped.
var metaIndex = func() (idx [256]uint8) {
	for i, f := range metaFields {
		idx[f.tag] = uint8(i + 1)
	}
	idx[tagOccurredAt] = uint8(len(metaFields) + 1)
	idx[tagVersion] = uint8(len(metaFields) + 2)
	return idx
}()

// writeMetaHead writes the head of one field of a HeaderMeta value, its
// tag and length; the value follows it. A strings.Builder, not a byte
// slice: the header value is a string, and the builder's bytes become it
// without a copy.
func writeMetaHead(b *strings.Builder, tag byte, n int) {
	var d [20]byte
	b.WriteByte(tag)
	b.Write(strconv.AppendInt(d[:0], int64(n), 10))
	b.WriteByte(':')
}

// eventHeader builds the headers of one event at version of its order in
// format f, checking that each value survives the round trip. It fails,
// wrapping ErrInvalidEvent, without a type, when a value has line breaks
// or surrounding whitespace, or when the occurrence time is outside the
// years RFC 3339 can write.
func eventHeader(ev *EventData, version uint64, f HeaderFormat) (nats.Header, error) {
	if ev.Type == "" {
		return nil, fmt.Errorf("%w: empty event type", ErrInvalidEvent)
	}
	typ, m := &ev.Type, &ev.Meta
	n := len(metaPrefix)
	for i, fl := range metaFields {
		if v := *metaString(i, typ, m); v != "" {
			if err := checkHeaderValue(fl.name, v); err != nil {
				return nil, err
			}
			n += len(v) + 8
		}
	}
	trace := [...]struct{ k, v string }{{HeaderTraceParent, m.TraceParent}, {HeaderTraceState, m.TraceState}}
	for _, kv := range trace {
		if kv.v != "" {
			if err := checkHeaderValue(kv.k, kv.v); err != nil {
				return nil, err
			}
		}
	}
	var ts [len(time.RFC3339Nano) + 8]byte
	var at []byte
	if !m.OccurredAt.IsZero() {
		// RFC 3339 has four-digit years: one outside them is formatted
		// but never parsed back, and the order could not be read again.
		if y := m.OccurredAt.UTC().Year(); y < 0 || y > 9999 {
			return nil, fmt.Errorf("%w: occurrence time %v outside the years 0000 to 9999", ErrInvalidEvent, m.OccurredAt)
		}
		at = m.OccurredAt.UTC().AppendFormat(ts[:0], time.RFC3339Nano)
	}
	ver := strconv.FormatUint(version, 10)
	// Room for every header the event can carry: the ones here, the
	// message id Append adds and the expected sequence the publish adds.
	size := 5
	if f == SeparateHeaders {
		size = len(metaFields) + 6
	}
	h := make(nats.Header, size)
	set := func(name, v string) {
		if v != "" {
			h[name] = []string{v}
		}
	}
	if f == SeparateHeaders {
		for i, fl := range metaFields {
			set(fl.name, *metaString(i, typ, m))
		}
		set(HeaderOccurredAt, string(at))
		set(HeaderVersion, ver)
	} else {
		var b strings.Builder
		b.Grow(n + len(at) + len(ver) + 16)
		b.WriteString(metaPrefix)
		for i, fl := range metaFields {
			if v := *metaString(i, typ, m); v != "" {
				writeMetaHead(&b, fl.tag, len(v))
				b.WriteString(v)
			}
		}
		if at != nil {
			writeMetaHead(&b, tagOccurredAt, len(at))
			b.Write(at)
		}
		writeMetaHead(&b, tagVersion, len(ver))
		b.WriteString(ver)
		h[HeaderMeta] = []string{b.String()}
	}
	for _, kv := range trace {
		set(kv.k, kv.v)
	}
	return h, nil
}

// EncodeEvent returns the headers under which Append stores ev as the
// event at version of its order in the default format (CompactHeaders),
// and the bytes it takes in a stream message (headers and payload), which
// the server's max payload bounds. It fails, wrapping ErrInvalidEvent, for
// an event Append refuses. With RecordedFromMsg it lets another store of
// the same format (memstore) keep exactly what this one keeps.
func EncodeEvent(ev EventData, version uint64) (nats.Header, int, error) {
	h, err := eventHeader(&ev, version, CompactHeaders)
	if err != nil {
		return nil, 0, err
	}
	return h, headerSize(h) + len(ev.Data), nil
}

// decodeMeta fills r from a HeaderMeta value. Its strings are cut from v,
// not copied. An error wraps ErrMalformedEvent.
func decodeMeta(v string, r *Recorded) error {
	rest, ok := strings.CutPrefix(v, metaPrefix)
	if !ok {
		return fmt.Errorf("%w: %s header at position %d does not start with %q", ErrMalformedEvent, HeaderMeta, r.Position, metaPrefix)
	}
	var seen uint32
	for rest != "" {
		tag := rest[0]
		colon := strings.IndexByte(rest, ':')
		if colon < 2 {
			return fmt.Errorf("%w: %s header at position %d: field %q has no length", ErrMalformedEvent, HeaderMeta, r.Position, tag)
		}
		n, err := strconv.ParseUint(rest[1:colon], 10, 32)
		if err != nil || n > uint64(len(rest)-colon-1) {
			return fmt.Errorf("%w: %s header at position %d: field %q has a bad length %q", ErrMalformedEvent, HeaderMeta, r.Position, tag, rest[1:colon])
		}
		val := rest[colon+1 : colon+1+int(n)]
		rest = rest[colon+1+int(n):]
		i := metaIndex[tag]
		if i != 0 {
			if seen&(1<<(i-1)) != 0 {
				return fmt.Errorf("%w: %s header at position %d: field %q twice", ErrMalformedEvent, HeaderMeta, r.Position, tag)
			}
			seen |= 1 << (i - 1)
		}
		switch tag {
		case tagOccurredAt:
			if r.Meta.OccurredAt, err = parseOccurredAt(HeaderMeta, val, r.Position); err != nil {
				return err
			}
		case tagVersion:
			if r.Version, err = parseVersion(HeaderMeta, val, r.Position); err != nil {
				return err
			}
		default:
			if i != 0 {
				*metaString(int(i-1), &r.Type, &r.Meta) = val
			}
		}
	}
	if r.Type == "" {
		return fmt.Errorf("%w: %s header at position %d has no event type", ErrMalformedEvent, HeaderMeta, r.Position)
	}
	if seen&(1<<(metaIndex[tagVersion]-1)) == 0 {
		return fmt.Errorf("%w: %s header at position %d has no version", ErrMalformedEvent, HeaderMeta, r.Position)
	}
	return nil
}

// parseOccurredAt parses an occurrence time stored under header at
// position seq; an error wraps ErrMalformedEvent.
func parseOccurredAt(header, v string, seq uint64) (time.Time, error) {
	ts, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %s header at position %d: occurrence time %q: %w", ErrMalformedEvent, header, seq, v, err)
	}
	return ts, nil
}

// parseVersion parses a version stored under header at position seq,
// which is at least 1; an error wraps ErrMalformedEvent.
func parseVersion(header, v string, seq uint64) (uint64, error) {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%w: %s header at position %d: version %q", ErrMalformedEvent, header, seq, v)
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
// id, where prefix is the store's subject prefix (WithSubjectPrefix). h is
// read in either layout: HeaderMeta when it is there, the separate Orders-*
// headers otherwise. h and data are referenced, not copied. It returns an
// error wrapping ErrMalformedEvent when the subject does not belong to
// prefix, there is no event type, the occurred-at or version does not
// parse, or HeaderMeta does not follow its layout (another prefix, a field
// without a valid length, a known field twice, no version).
func RecordedFromMsg(subject string, seq uint64, t time.Time, h nats.Header, data []byte, prefix string) (Recorded, error) {
	orderID, ok := strings.CutPrefix(subject, prefix)
	if ok {
		orderID, ok = strings.CutPrefix(orderID, ".")
	}
	if !ok || orderID == "" || strings.Contains(orderID, ".") {
		return Recorded{}, fmt.Errorf("%w: subject %q at position %d is not under prefix %q", ErrMalformedEvent, subject, seq, prefix)
	}
	r := Recorded{OrderID: orderID, Position: seq, Data: data, Time: t,
		Meta: Metadata{TraceParent: h.Get(HeaderTraceParent), TraceState: h.Get(HeaderTraceState)}}
	if meta := h.Get(HeaderMeta); meta != "" {
		if err := decodeMeta(meta, &r); err != nil {
			return Recorded{}, err
		}
		return r, nil
	}
	for i, f := range metaFields {
		*metaString(i, &r.Type, &r.Meta) = h.Get(f.name)
	}
	if r.Type == "" {
		return Recorded{}, fmt.Errorf("%w: no %s or %s header at position %d", ErrMalformedEvent, HeaderMeta, HeaderEventType, seq)
	}
	var err error
	if v := h.Get(HeaderVersion); v != "" {
		if r.Version, err = parseVersion(HeaderVersion, v, seq); err != nil {
			return Recorded{}, err
		}
	}
	if at := h.Get(HeaderOccurredAt); at != "" {
		if r.Meta.OccurredAt, err = parseOccurredAt(HeaderOccurredAt, at, seq); err != nil {
			return Recorded{}, err
		}
	}
	return r, nil
}

// partialRecorded is what can be read of a message RecordedFromMsg
// refused: its type and hashes where they are legible, so that a reader
// can still report and chain past it (the audit tells an altered event,
// which has them, from one written outside the chain, which has none).
func partialRecorded(orderID string, seq uint64, t time.Time, h nats.Header) Recorded {
	r := Recorded{OrderID: orderID, Position: seq, Time: t}
	meta := h.Get(HeaderMeta)
	if meta == "" {
		r.Type, r.Meta.Hash, r.Meta.PrevHash = h.Get(HeaderEventType), h.Get(HeaderHash), h.Get(HeaderPrevHash)
		return r
	}
	var got Recorded
	_ = decodeMeta(meta, &got) // the fields before a malformed one are kept
	r.Type, r.Meta.Hash, r.Meta.PrevHash = got.Type, got.Meta.Hash, got.Meta.PrevHash
	// A hash the layout could not reach past a damaged field is looked
	// for by its shape: 64 hexadecimal digits.
	if r.Meta.Hash == "" {
		r.Meta.Hash = findHash(meta, "h64:")
	}
	if r.Meta.PrevHash == "" {
		r.Meta.PrevHash = findHash(meta, "p64:")
	}
	return r
}

// findHash returns the 64 hexadecimal digits that follow the first
// occurrence of field in meta that is followed by them, or "".
func findHash(meta, field string) string {
	for i := 0; ; {
		j := strings.Index(meta[i:], field)
		if j < 0 {
			return ""
		}
		v := meta[i+j+len(field):]
		if len(v) >= 64 && strings.Trim(v[:64], "0123456789abcdef") == "" {
			return v[:64]
		}
		i += j + 1
	}
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
