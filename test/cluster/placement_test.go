package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
)

// A cluster whose servers have not all reported cannot place a replicated
// stream, and says so at once ("no suitable peers for placement", 10005):
// ordersd met it starting beside a cluster that was still coming up. Here
// two of three servers restart without the third. The store reports that
// answer as ErrUnavailable, which ordersd retries until its connect
// timeout, instead of an error that stops the process; once the third
// server is back, the stream is placed.
func TestPlacementWithAPeerDownIsUnavailable(t *testing.T) {
	c := estest.StartCluster(t, 3)
	_, js := estest.ConnectURL(t, c.URLs())
	estest.ReplicatedStore(t, js) // the cluster is up and answers
	down := 2
	c.Stop(down)
	// The others restart knowing the cluster has three servers, and hear
	// nothing from the third.
	for i := range 2 {
		c.Stop(i)
	}
	for i := range 2 {
		c.Start(i)
	}
	open := func(i int) error {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		_, err := eventstore.New(ctx, js, eventstore.WithReplicas(3),
			eventstore.WithStreamName(fmt.Sprintf("PLACED%d", i)), eventstore.WithSubjectPrefix(fmt.Sprintf("placed%d", i)))
		return err
	}
	// Until the meta leader has learnt that the server is gone, it still
	// places replicas on it (and the stream is created, or the create
	// waits for it); each try is a new stream.
	var err error
	i := 0
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		i++
		err = open(i)
		if apiErr, ok := errors.AsType[*jetstream.APIError](err); ok && apiErr.ErrorCode == 10005 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no placement error with a server down after %d streams; last error: %v", i, err)
		}
	}
	if !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("placement with a server down: err = %v, want ErrUnavailable", err)
	}
	c.Start(down)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		err := open(i)
		if err == nil {
			return
		}
		if !errors.Is(err, eventstore.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("placement with every server back: %v", err)
		}
	}
}
