package loadgen_test

import (
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/app/apptest"
	"github.com/orderstream/orderstream/internal/loadgen"
)

func TestParseMix(t *testing.T) {
	m, err := loadgen.ParseMix("create=3,get=1")
	if err != nil || m[loadgen.Create] != 3 || m[loadgen.Get] != 1 {
		t.Fatalf("%v %v", m, err)
	}
	for _, bad := range []string{"", "create", "fly=1", "create=-1", "create=0"} {
		if _, err := loadgen.ParseMix(bad); err == nil {
			t.Errorf("ParseMix(%q) accepted", bad)
		}
	}
}

// A short load against a real ordersd over gRPC, REST and raw JetStream:
// every scheduled request completes without error.
func TestRunAgainstOrdersd(t *testing.T) {
	a, _ := apptest.Start(t, nil)
	mix, _ := loadgen.ParseMix("create=40,add=30,place=10,get=15,list=5")
	lc := loadgen.Config{Rate: 200, Concurrency: 32, Duration: 500 * time.Millisecond, Mix: mix}
	g, err := loadgen.NewGRPC(a.GRPC)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := loadgen.NewRaw(t.Context(), "nats://"+a.NATS)
	if err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]loadgen.Target{"grpc": g, "rest": loadgen.NewREST("http://" + a.HTTP), "raw": raw} {
		rep, err := loadgen.Run(t.Context(), name, target, lc)
		if err != nil {
			t.Fatal(err)
		}
		_ = target.Close()
		if rep.Completed+rep.Dropped < 90 || rep.Completed == 0 {
			t.Fatalf("%s: completed %d, dropped %d of ~100 scheduled", name, rep.Completed, rep.Dropped)
		}
		// Reads may miss an order the read model has not applied yet
		// (NotFound), and an add may race the place of the same draft
		// (FailedPrecondition, HTTP 400); nothing else may fail.
		for class, n := range rep.Overall.Errors {
			if class != "NotFound" && class != "HTTP 404" && class != "FailedPrecondition" && class != "HTTP 400" {
				t.Fatalf("%s: %d errors of class %s\n%s", name, n, class, rep)
			}
		}
		if rep.Overall.P50 <= 0 || rep.Overall.P99 < rep.Overall.P50 {
			t.Fatalf("%s: percentiles %+v", name, rep.Overall)
		}
	}
}
