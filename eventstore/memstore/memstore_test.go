package memstore_test

import (
	"testing"

	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/eventstore/memstore"
)

func TestConformance(t *testing.T) {
	estest.Run(t, func(*testing.T) estest.Store { return memstore.New() })
}
