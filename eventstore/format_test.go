package eventstore_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderstream/orderstream/eventstore"
)

// fullEvent is an event with every metadata field set, n telling events
// apart.
func fullEvent(n int, rid string) eventstore.EventData {
	return eventstore.EventData{
		Type: fmt.Sprintf("Type%d", n),
		Data: fmt.Appendf(nil, "payload %d", n),
		Meta: eventstore.Metadata{
			RequestID:          rid,
			RequestFingerprint: fmt.Sprintf("fp-%d", n),
			CorrelationID:      fmt.Sprintf("corr-%d", n),
			CausationID:        fmt.Sprintf("cause-%d", n),
			Actor:              fmt.Sprintf("user:ada lovelace %d", n),
			OccurredAt:         time.Date(2026, 12, 5, 9, 0, n, 123456789, time.UTC),
			TraceParent:        fmt.Sprintf("00-%032x-%016x-01", n+1, n+1),
			TraceState:         "vendor=a:b",
			Hash:               strings.Repeat(fmt.Sprintf("%x", n%16), 64),
			PrevHash:           strings.Repeat("0", 64),
		},
	}
}

// sameMeta compares metadata with the occurrence time as an instant: it is
// stored in UTC, whatever zone it was given in.
func sameMeta(a, b eventstore.Metadata) bool {
	at, bt := a.OccurredAt, b.OccurredAt
	a.OccurredAt, b.OccurredAt = time.Time{}, time.Time{}
	return a == b && at.Equal(bt)
}

// Events written in either header format read back as they were written,
// through every read of the store, in one history that mixes the two: a
// log written before the compact format, or by a writer kept on the
// separate one during an upgrade, stays readable.
func TestHeaderFormatsReadBackAlike(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	separate, err := eventstore.New(ctx, e.js, eventstore.WithStorage(jetstream.MemoryStorage), eventstore.WithHeaderFormat(eventstore.SeparateHeaders))
	if err != nil {
		t.Fatal(err)
	}
	writers := []struct {
		s      *eventstore.Store
		format eventstore.HeaderFormat
	}{{e.store, eventstore.CompactHeaders}, {separate, eventstore.SeparateHeaders}, {e.store, eventstore.CompactHeaders}, {separate, eventstore.SeparateHeaders}}
	var want []eventstore.EventData
	for i, w := range writers {
		// Two events per append: one request, so one request id.
		evs := []eventstore.EventData{fullEvent(2*i, fmt.Sprintf("req-%d", i)), fullEvent(2*i+1, fmt.Sprintf("req-%d", i))}
		if i == 3 {
			evs[1].Meta = eventstore.Metadata{RequestID: evs[0].Meta.RequestID} // empty fields stay empty
		}
		if _, err := w.s.Append(ctx, "mixed", uint64(2*i), evs); err != nil {
			t.Fatalf("append %d (%s): %v", i, w.format, err)
		}
		want = append(want, evs...)
	}

	check := func(via string, got []eventstore.Recorded) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d events, want %d", via, len(got), len(want))
		}
		for i, r := range got {
			w := want[i]
			if r.OrderID != "mixed" || r.Version != uint64(i+1) || r.Type != w.Type || string(r.Data) != string(w.Data) ||
				r.Position == 0 || r.Time.IsZero() || !sameMeta(r.Meta, w.Meta) {
				t.Errorf("%s: event %d = %+v\nwant %+v at version %d", via, i, r, w, i+1)
			}
		}
	}
	load, err := e.store.Load(ctx, "mixed")
	if err != nil {
		t.Fatal(err)
	}
	check("Load", load)
	latest, err := e.store.LoadLatest(ctx, "mixed")
	if err != nil {
		t.Fatal(err)
	}
	check("LoadLatest", latest)
	var read, batches, got []eventstore.Recorded
	for r, err := range e.store.Read(ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		read = append(read, r)
	}
	check("Read", read)
	for b, err := range e.store.ReadBatches(ctx, 1, eventstore.UpTo(load[len(load)-1].Position)) {
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range b.Entries {
			if en.Err != nil {
				t.Fatal(en.Err)
			}
			batches = append(batches, en.Recorded)
		}
	}
	check("ReadBatches", batches)
	for _, r := range load {
		g, err := e.store.Get(ctx, r.Position)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, g)
	}
	check("Get", got)

	// What is stored is the format each writer was given.
	st := streamHandle(t, e.js, e.store.StreamName())
	for i, r := range load {
		raw, err := st.GetMsg(ctx, r.Position)
		if err != nil {
			t.Fatal(err)
		}
		compact := raw.Header.Get(eventstore.HeaderMeta) != ""
		separate := raw.Header.Get(eventstore.HeaderEventType) != ""
		if f := writers[i/2].format; compact != (f == eventstore.CompactHeaders) || separate != (f == eventstore.SeparateHeaders) {
			t.Errorf("event %d written %s carries %v", i, f, raw.Header)
		}
	}
}

// The compact format takes fewer bytes than the separate one for the same
// event, which is what it is for.
func TestCompactHeadersAreSmaller(t *testing.T) {
	ev := fullEvent(1, "req-1")
	_, compact, err := eventstore.EncodeEvent(ev, 7)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, eventstore.WithHeaderFormat(eventstore.SeparateHeaders))
	if _, err := e.store.Append(t.Context(), "size", 0, []eventstore.EventData{ev}); err != nil {
		t.Fatal(err)
	}
	recs, err := e.store.Load(t.Context(), "size")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := streamHandle(t, e.js, e.store.StreamName()).GetMsg(t.Context(), recs[0].Position)
	if err != nil {
		t.Fatal(err)
	}
	separate := len(ev.Data)
	for k, vs := range raw.Header {
		if strings.HasPrefix(k, "Nats-") {
			continue // the message id and expected sequence, in both formats
		}
		for _, v := range vs {
			separate += len(k) + len(v) + 4
		}
	}
	if compact >= separate {
		t.Fatalf("compact event %d bytes, separate %d", compact, separate)
	}
}

func TestHeaderFormatOption(t *testing.T) {
	for name, c := range map[string]struct {
		want eventstore.HeaderFormat
		ok   bool
	}{"compact": {eventstore.CompactHeaders, true}, "separate": {eventstore.SeparateHeaders, true}, "": {}, "Compact": {}, "binary": {}} {
		f, err := eventstore.ParseHeaderFormat(name)
		if c.ok != (err == nil) || (c.ok && (f != c.want || f.String() != name)) {
			t.Errorf("ParseHeaderFormat(%q) = %v, %v", name, f, err)
		}
		if !c.ok && !errors.Is(err, eventstore.ErrInvalidOption) {
			t.Errorf("ParseHeaderFormat(%q): %v, want ErrInvalidOption", name, err)
		}
	}
	e := newEnv(t)
	if _, err := eventstore.New(t.Context(), e.js, eventstore.WithHeaderFormat(eventstore.HeaderFormat(9))); !errors.Is(err, eventstore.ErrInvalidOption) {
		t.Fatalf("WithHeaderFormat(9): %v, want ErrInvalidOption", err)
	}
}

// A compact header that does not parse is a malformed event, never a
// panic or an event with made-up fields.
func TestMalformedMetaHeader(t *testing.T) {
	for name, v := range map[string]string{
		"no prefix":          "t1:A",
		"other layout":       "m2t1:Av1:1",
		"no type":            "m1v1:1",
		"empty type":         "m1t0:v1:1",
		"no length":          "m1t:A",
		"length not decimal": "m1tx:A",
		"length past end":    "m1t5:A",
		"no colon":           "m1t1A",
		"field twice":        "m1t1:At1:B",
		"version zero":       "m1t1:Av1:0",
		"version not number": "m1t1:Av1:x",
		"bad time":           "m1t1:Ao9:yesterday",
		"negative length":    "m1t-1:A",
		"no version":         "m1t1:A",
	} {
		_, err := eventstore.RecordedFromMsg("orders.x", 1, time.Now(), nats.Header{eventstore.HeaderMeta: {v}}, nil, "orders")
		if !errors.Is(err, eventstore.ErrMalformedEvent) {
			t.Errorf("%s (%q): %v, want ErrMalformedEvent", name, v, err)
		}
	}
	// Tags a later layout may add are skipped, however often they appear.
	for _, v := range []string{"m1t1:Az3:newv1:4", "m1t1:Ax1:ax1:bv1:4", "m1t1:AX1:aX1:bv1:4"} {
		r, err := eventstore.RecordedFromMsg("orders.x", 1, time.Now(), nats.Header{eventstore.HeaderMeta: {v}}, nil, "orders")
		if err != nil || r.Type != "A" || r.Version != 4 {
			t.Fatalf("unknown tags in %q: %+v, %v", v, r, err)
		}
	}
}

// Whatever a compact header holds, decoding it does not panic, and what
// decodes is written back the same way.
func FuzzMetaHeader(f *testing.F) {
	h, _, err := eventstore.EncodeEvent(fullEvent(3, "req"), 12)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(h.Get(eventstore.HeaderMeta))
	f.Add("m1t1:Av1:1")
	f.Add("m1t1:Aa0:o30:2026-12-05T09:00:00.000000001Zv2:10")
	f.Add("m1t99999999999999999999:A")
	f.Fuzz(func(t *testing.T, v string) {
		r, err := eventstore.RecordedFromMsg("orders.x", 1, time.Time{}, nats.Header{eventstore.HeaderMeta: {v}}, []byte("d"), "orders")
		if err != nil {
			if !errors.Is(err, eventstore.ErrMalformedEvent) {
				t.Fatalf("%q: %v, not ErrMalformedEvent", v, err)
			}
			return
		}
		h, _, err := eventstore.EncodeEvent(eventstore.EventData{Type: r.Type, Data: r.Data, Meta: r.Meta}, r.Version)
		if err != nil {
			return // a value the store would not write (a line break, surrounding blanks)
		}
		again, err := eventstore.RecordedFromMsg("orders.x", 1, time.Time{}, h, []byte("d"), "orders")
		if err != nil || again.Type != r.Type || again.Version != r.Version || !sameMeta(again.Meta, r.Meta) {
			t.Fatalf("%q: decoded %+v, re-encoded as %q and decoded %+v, %v", v, r, h.Get(eventstore.HeaderMeta), again, err)
		}
	})
}

// A compact header damaged before its hashes still yields them to a reader
// of the log, so that the audit reports the event altered rather than
// written outside the chain; one without hashes yields none.
func TestDamagedMetaHeaderKeepsItsHashes(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	hash, prev := strings.Repeat("ab", 32), strings.Repeat("0c", 32)
	damaged := []struct {
		meta       string
		hash, prev string
	}{
		{"n1t12:OrderCreatedh64:" + hash + "p64:" + prev + "v1:1", hash, prev},       // the layout's prefix
		{"m1t99:OrderCreatedh64:" + hash + "p64:" + prev + "v1:1", hash, prev},       // a length past its value
		{"m1t12:OrderCreatedh64:" + hash + "p64:" + prev + "v1:0", hash, prev},       // after the hashes
		{"m1t12:OrderCreateda4:h64:v1:0", "", ""},                                    // none, though a value looks like a field
		{"n1t12:OrderCreatedh63:" + hash[:63] + "p64:" + prev[:60] + "zzzz", "", ""}, // not 64 digits
	}
	for i, d := range damaged {
		m := nats.NewMsg(e.store.Subject(fmt.Sprintf("damaged-%d", i)))
		m.Header.Set(eventstore.HeaderMeta, d.meta)
		if _, err := e.js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	var got []eventstore.Entry
	for b, err := range e.store.ReadBatches(ctx, 1, eventstore.UpTo(uint64(len(damaged)))) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b.Entries...)
	}
	if len(got) != len(damaged) {
		t.Fatalf("%d entries, want %d", len(got), len(damaged))
	}
	for i, en := range got {
		if !errors.Is(en.Err, eventstore.ErrMalformedEvent) || en.Meta.Hash != damaged[i].hash || en.Meta.PrevHash != damaged[i].prev {
			t.Errorf("%q: err %v, hash %q, prev %q; want ErrMalformedEvent, %q, %q", damaged[i].meta, en.Err, en.Meta.Hash, en.Meta.PrevHash, damaged[i].hash, damaged[i].prev)
		}
	}
}
