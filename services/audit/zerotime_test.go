package audit_test

import (
	"slices"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// An export from the zero from_time, or any time before the log's first
// event, starts at that event, as one from position 0 does, and numbers
// the events written before versions were recorded as it does: they were
// exported as version 0, so two exports of the same whole log disagreed.
func TestExportFromTheZeroTimeNumbersEventsWithoutVersions(t *testing.T) {
	e := startB(t)
	id := "legacy-1"
	publishLegacy(t, e, id)
	want := []uint32{1, 2, 3}
	if got := versions(collect(t, e, &ordersv1.StreamEventsRequest{})); !slices.Equal(got, want) {
		t.Fatalf("export from position 0: versions %v, want %v", got, want)
	}
	for _, from := range []time.Time{{}, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if got := versions(collect(t, e, &ordersv1.StreamEventsRequest{FromTime: timestamppb.New(from)})); !slices.Equal(got, want) {
			t.Errorf("export from %v, before the first event: versions %v, want %v", from, got, want)
		}
	}
}
