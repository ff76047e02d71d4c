package query_test

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/orderstream/orderstream/projections"
	"modernc.org/sqlite"
)

// sqlHook is called by the SQLite function test_hook(position), which a
// test's trigger runs inside the projection's own transaction: a seam to
// act at an exact point of a batch without any hook in the production
// code.
var sqlHook struct {
	sync.Mutex
	fn func(position int64) error
}

func init() {
	sqlite.MustRegisterScalarFunction("test_hook", 1, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		sqlHook.Lock()
		fn := sqlHook.fn
		sqlHook.Unlock()
		pos, _ := args[0].(int64)
		if fn != nil {
			return nil, fn(pos)
		}
		return nil, nil
	})
}

func setSQLHook(t *testing.T, fn func(position int64) error) {
	sqlHook.Lock()
	sqlHook.fn = fn
	sqlHook.Unlock()
	t.Cleanup(func() {
		sqlHook.Lock()
		sqlHook.fn = nil
		sqlHook.Unlock()
	})
}

// execSQL runs statements on a read-model file through a connection of
// its own.
func execSQL(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.ExecContext(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
}

var errInjected = errors.New("injected apply failure")

// The runner replays a log into a fresh read model in small batches and is
// stopped at chosen points inside a batch's transaction: its context
// cancelled, its apply failing, its database closed under it. After each
// stop the committed read model equals the fold of the log up to its own
// checkpoint; after a final resume it equals a fresh rebuild exactly.
func TestRunnerStoppedInsideBatches(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	last := workload(t, e, 20, 300, rand.New(rand.NewPCG(21, 22)))
	if err := e.runner.WaitForCommitted(ctx, last); err != nil {
		t.Fatal(err)
	}
	head, err := e.store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if head < 60 {
		t.Fatalf("log too short for the test: %d", head)
	}
	e.stop()

	// A fresh read model, with a trigger that calls the hook while the
	// batch's transaction moves the checkpoint: after all of the batch's
	// other writes, before its commit.
	e.dir = t.TempDir()
	d, err := projections.Open(ctx, e.dir)
	if err != nil {
		t.Fatal(err)
	}
	path := d.Current().Path()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	execSQL(t, path, `CREATE TRIGGER test_hook BEFORE UPDATE ON checkpoint BEGIN SELECT test_hook(NEW.position); END`)
	opts := []projections.Option{projections.WithBatch(7, time.Millisecond)}

	var prev uint64
	stopAt := func(name string, at uint64, act func(p *projection) error, wantErr, rolledBack bool) {
		t.Helper()
		var p *projection
		started := make(chan struct{})
		fired := make(chan uint64, 1)
		var once sync.Once
		setSQLHook(t, func(pos int64) error {
			if uint64(pos) < at {
				return nil
			}
			<-started // p is set
			var err error
			once.Do(func() {
				err = act(p)
				fired <- uint64(pos)
			})
			return err
		})
		p = e.runProjection(t, opts...)
		close(started)
		err := <-p.done
		p.done <- err // for halt
		if err := p.halt(); (err != nil) != wantErr {
			t.Fatalf("%s: runner returned %v", name, err)
		}
		var firedAt uint64
		select {
		case firedAt = <-fired:
		default:
			t.Fatalf("%s: the hook never fired", name)
		}
		rm, err := projections.OpenReadModel(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer rm.Close()
		cp := checkReadModel(t, e, rm, customers)
		if cp < prev {
			t.Fatalf("%s: checkpoint went back from %d to %d", name, prev, cp)
		}
		t.Logf("%s at batch ending %d: checkpoint %d", name, firedAt, cp)
		prev = cp
		if rolledBack {
			// The batch the hook interrupted must not have committed.
			if cp >= firedAt {
				t.Fatalf("%s: batch ending at %d committed (checkpoint %d)", name, firedAt, cp)
			}
		}
	}
	stopAt("cancel", head/4, func(p *projection) error { p.cancel(); return nil }, false, true)
	stopAt("failing apply", head/2, func(*projection) error { return errInjected }, true, true)
	// Closing the database does not abort the transaction in flight; the
	// runner fails at its next one.
	stopAt("closed database", 3*head/4, func(p *projection) error { return p.dir.Close() }, true, false)

	setSQLHook(t, nil)
	execSQL(t, path, `DROP TRIGGER test_hook`)
	p := e.runProjection(t, opts...)
	if err := p.runner.WaitForCommitted(ctx, head); err != nil {
		t.Fatal(err)
	}
	if p.runner.Position() < prev {
		t.Fatalf("resumed at %d, below %d", p.runner.Position(), prev)
	}
	want := expectFromLog(t, e, head)
	checkServed(t, e, want, customers...)
	rebuildEqualsIncremental(t, e, want)
	if err := p.halt(); err != nil {
		t.Fatal(err)
	}
}
