package memstore_test

import (
	"testing"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/eventstore/memstore"
)

func TestConformance(t *testing.T) {
	estest.Run(t, func(*testing.T) estest.Store { return memstore.New() })
}

// The store keeps what it was given: neither the appender's slice nor a
// reader's copy changes what it holds.
func TestDataIsCopied(t *testing.T) {
	s := memstore.New()
	data := []byte("first")
	estest.MustAppend(t, s, "o", 0, eventstore.EventData{Type: "A", Data: data})
	data[0] = 'X'
	recs := estest.MustLoad(t, s, "o")
	recs[0].Data[1] = 'Y'
	got, err := s.Get(t.Context(), 1)
	if err != nil || string(got.Data) != "first" {
		t.Fatalf("Get(1) = %q, %v; want the data as appended", got.Data, err)
	}
}
