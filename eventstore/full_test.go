package eventstore_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/internal/natsconn/natstest"
)

// A server whose store is full refuses appends until an operator makes
// room: that is ErrUnavailable (tried again later, the same append goes
// through), not an error of no class, which the services answered
// INTERNAL, and which the payments manager took for a refusal of a charge
// already made. Nothing is appended meanwhile.
func TestAppendToAFullStoreIsUnavailable(t *testing.T) {
	srv := natstest.StartServer(t, func(o *server.Options) { o.JetStream, o.JetStreamMaxStore = true, 256<<10 })
	_, js := estest.Connect(t, srv)
	store, err := eventstore.New(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 4096)
	for i := range 1000 {
		id := fmt.Sprintf("o-%d", i)
		_, err = store.Append(t.Context(), id, 0, []eventstore.EventData{{Type: "A", Data: data, Meta: eventstore.Metadata{RequestID: id}}})
		if err != nil {
			break
		}
	}
	if !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("append to a store of 256 KiB after it filled: %v, want ErrUnavailable", err)
	}
}
