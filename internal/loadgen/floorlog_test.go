package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/rawbench"
)

// logOrdersd is an in-process ordersd holding the events of 100 ms of
// CreateOrder, as the phases before the fill leave them, and that count:
// the size of its log once the projection has applied it.
func logOrdersd(t *testing.T) (*ordersd, *GRPC, uint64) {
	t.Helper()
	a, g := inProcessOrdersd(t, nil)
	if _, err := RunClosed(t.Context(), "earlier", g, 2, 100*time.Millisecond, Mix{Create: 1}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := settle(t.Context(), ordersv1.NewOrderAdminServiceClient(g.conn)); err != nil {
		t.Fatal(err)
	}
	orders, err := rawbench.OpenLog("nats://"+a.NATS, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	defer orders.Close()
	n, _, err := orders.Size(t.Context())
	if err != nil || n == 0 {
		t.Fatalf("log of %d events after the earlier phase: %v", n, err)
	}
	return &ordersd{grpc: a.GRPC, nats: a.NATS, pid: os.Getpid()}, g, n
}

// rebuildRow measures the log with floorLog and returns the report and
// its table's rebuild row.
func rebuildRow(t *testing.T, cfg FloorConfig, p *ordersd, g *GRPC) (*FloorReport, string) {
	t.Helper()
	op := &Report{Duration: 1}
	rep := &FloorReport{FillMix: cfg.FillMix.String(), Create: CreatePhase{Create: op}, CmdCreate: CreatePhase{Create: op}, Get: GetPhase{Get: op}, MixedHalf: op}
	if err := floorLog(t.Context(), cfg, p, g, rep); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(rep.String(), "\n") {
		if strings.HasPrefix(line, "| rebuild ") {
			return rep, line
		}
	}
	t.Fatalf("no rebuild row:\n%s", rep)
	return nil, ""
}

// The rebuild's row says what the log holds: with --events below what the
// earlier phases appended the fill adds nothing, and says so; above it,
// the fill adds the rest with its mix, on top of the earlier events.
func TestFloorLogSaysWhatTheLogHolds(t *testing.T) {
	p, g, earlier := logOrdersd(t)
	cfg := FloorConfig{Clients: 4, Events: 1, FillTimeout: time.Minute, FillMix: Mix{Create: 1}, Phase: time.Second, Progress: io.Discard}
	rep, row := rebuildRow(t, cfg, p, g)
	if rep.Events != earlier || rep.EarlierEvents != earlier || rep.FillEvents != 0 {
		t.Fatalf("log of %d events, %d from the earlier phases, %d from the fill; want %d, %d, 0", rep.Events, rep.EarlierEvents, rep.FillEvents, earlier, earlier)
	}
	if want := fmt.Sprintf(", %d events (all from the earlier phases; the fill with create=1 added none); CPU per event |", earlier); !strings.Contains(row, want) {
		t.Fatalf("rebuild row lacks %q:\n%s", want, row)
	}

	cfg.Events = int(earlier) + 200
	rep, row = rebuildRow(t, cfg, p, g)
	if rep.Events < earlier+200 || rep.EarlierEvents != earlier || rep.FillEvents != rep.Events-earlier {
		t.Fatalf("log of %d events, %d from the earlier phases, %d from the fill; want at least %d, %d, the rest", rep.Events, rep.EarlierEvents, rep.FillEvents, earlier+200, earlier)
	}
	if want := fmt.Sprintf(", %d events (%d added by the fill with create=1, %d by the earlier phases); CPU per event |", rep.Events, rep.Events-earlier, earlier); !strings.Contains(row, want) {
		t.Fatalf("rebuild row lacks %q:\n%s", want, row)
	}
	if doc := jsonOf(t, rep); doc["events"] != float64(rep.Events) || doc["fill_events"] != float64(rep.Events-earlier) || doc["events_before_fill"] != float64(earlier) {
		t.Fatalf("JSON: %v events, %v from the fill, %v before it", doc["events"], doc["fill_events"], doc["events_before_fill"])
	}
}

// jsonOf is rep as its JSON document reads.
func jsonOf(t *testing.T, rep *FloorReport) map[string]any {
	t.Helper()
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// The raw read the rebuild is divided by runs on both sides of it, and
// the faster is the floor, whichever side ran on warmer caches.
func TestFloorLogTakesTheFasterRawRead(t *testing.T) {
	p, g, _ := logOrdersd(t)
	cfg := FloorConfig{Clients: 4, Events: 1, FillTimeout: time.Minute, FillMix: Mix{Create: 1}, Phase: time.Second, Progress: io.Discard}
	rep, row := rebuildRow(t, cfg, p, g)
	if rep.RawReadBefore <= 0 || rep.RawReadAfter <= 0 || rep.RawRead != max(rep.RawReadBefore, rep.RawReadAfter) || rep.Rebuild <= 0 {
		t.Fatalf("raw read %v/s before the rebuild, %v/s after, floor %v/s; rebuild %v/s", rep.RawReadBefore, rep.RawReadAfter, rep.RawRead, rep.Rebuild)
	}
	// ordersd's CPU is counted in ticks of 10 ms, too coarse for so short
	// a read to show.
	if c := rep.RawReadCPU; c.Client <= 0 {
		t.Fatalf("the raw read's CPU per event %+v", c)
	}
	if want := fmt.Sprintf("| rebuild ÷ raw ordered-consumer read (the faster of one before and one after the rebuild), %d events", rep.Events); !strings.HasPrefix(row, want) {
		t.Fatalf("rebuild row does not start %q:\n%s", want, row)
	}
	if want := fmt.Sprintf(" vs %.0f/s (raw read %.0f/s before, %.0f/s after; the faster ", rep.RawRead, rep.RawReadBefore, rep.RawReadAfter); !strings.Contains(row, want) {
		t.Fatalf("rebuild row lacks %q:\n%s", want, row)
	}
	if doc := jsonOf(t, rep); doc["raw_read_before_rebuild_events_per_s"] != rep.RawReadBefore || doc["raw_read_after_rebuild_events_per_s"] != rep.RawReadAfter {
		t.Fatalf("JSON raw reads %v before, %v after", doc["raw_read_before_rebuild_events_per_s"], doc["raw_read_after_rebuild_events_per_s"])
	}
}
