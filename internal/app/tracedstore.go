package app

import (
	"context"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/otelstore"
)

// tracedStore is the event store with its loads and appends going through
// the traced wrapper, for services that need more of the store than the
// wrapper has (audit: Head and Subject; payments: StreamName and
// SubjectPrefix), so their loads are spans under the RPC or payment job
// that made them, as the command side's are.
type tracedStore struct {
	*eventstore.Store
	traced *otelstore.Store
}

func (s tracedStore) Load(ctx context.Context, orderID string) ([]eventstore.Recorded, error) {
	return s.traced.Load(ctx, orderID)
}

func (s tracedStore) LoadLatest(ctx context.Context, orderID string) ([]eventstore.Recorded, error) {
	return s.traced.LoadLatest(ctx, orderID)
}

func (s tracedStore) Append(ctx context.Context, orderID string, expectedRevision uint64, events []eventstore.EventData) (eventstore.AppendResult, error) {
	return s.traced.Append(ctx, orderID, expectedRevision, events)
}
