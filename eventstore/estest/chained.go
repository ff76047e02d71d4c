package estest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/chain"
	"google.golang.org/protobuf/encoding/protowire"
)

// OrderLog is what AppendChained needs of a store: an order's history and
// appends to it.
type OrderLog interface {
	Load(ctx context.Context, orderID string) ([]eventstore.Recorded, error)
	Append(ctx context.Context, orderID string, expectedRevision uint64, events []eventstore.EventData) (eventstore.AppendResult, error)
}

var chainedSeq atomic.Int64

// AppendChained appends one event of type typ with payload data to the
// existing order id, linked into the order's hash chain as the command
// side links it, and returns its position. It fails t on an error.
func AppendChained(t testing.TB, store OrderLog, id, typ string, data []byte) uint64 {
	t.Helper()
	ctx := t.Context()
	recs, err := store.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) == 0 {
		t.Fatalf("AppendChained: order %s has no events", id)
	}
	last := recs[len(recs)-1]
	meta := eventstore.Metadata{RequestID: fmt.Sprintf("chained-%d", chainedSeq.Add(1)), Actor: "anonymous", OccurredAt: time.Now().UTC(), PrevHash: last.Meta.Hash}
	meta.Hash, err = chain.Compute(meta.PrevHash, chain.Fields{OrderID: id, Type: typ, OccurredAt: meta.OccurredAt,
		Actor: meta.Actor, RequestID: meta.RequestID, Payload: data})
	if err != nil {
		t.Fatal(err)
	}
	res, err := store.Append(ctx, id, last.Version, []eventstore.EventData{{Type: typ, Data: data, Meta: meta}})
	if err != nil {
		t.Fatal(err)
	}
	return res.Position
}

// AppendNewerBuildsEvent appends to the order, chained, an event of a type
// a newer build added (docs/schema-evolution.md allows that): an Event
// message holding a oneof case this build does not know, under a type
// name it does not know either. It returns its position.
func AppendNewerBuildsEvent(t testing.TB, store OrderLog, id string) uint64 {
	t.Helper()
	return AppendChained(t, store, id, NewerBuildsType, NewerBuildsPayload())
}

// NewerBuildsType is the type name of AppendNewerBuildsEvent's event.
const NewerBuildsType = "OrderGiftWrapped"

// NewerBuildsPayload is the payload of an event of a type a newer build
// added: an Event message holding a oneof case this build does not know.
func NewerBuildsPayload() []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, 100, protowire.BytesType), []byte("gift"))
}
