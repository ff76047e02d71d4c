package eventstore

import (
	"context"
	"iter"
)

// Log is the event log as its writers and readers use it: appending to an
// order, loading an order, getting one event, the head, and reading or
// following the whole log event by event. *Store implements it, and so do
// the in-memory store (memstore) and the tracing wrapper (otelstore), so
// that one can stand for another; the conformance suite (estest) holds
// every implementation to *Store's behaviour and errors, documented on its
// methods.
type Log interface {
	Append(ctx context.Context, orderID string, expectedRevision uint64, events []EventData) (AppendResult, error)
	Load(ctx context.Context, orderID string) ([]Recorded, error)
	LoadAfter(ctx context.Context, orderID string, afterPosition uint64) ([]Recorded, error)
	LoadLatest(ctx context.Context, orderID string) ([]Recorded, error)
	LoadLatestAfter(ctx context.Context, orderID string, afterPosition uint64) ([]Recorded, error)
	Get(ctx context.Context, position uint64) (Recorded, error)
	Head(ctx context.Context) (uint64, error)
	Read(ctx context.Context, from uint64) iter.Seq2[Recorded, error]
	Follow(ctx context.Context, from uint64) iter.Seq2[Recorded, error]
}

var _ Log = (*Store)(nil)
