package projections

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	sqlite3 "modernc.org/sqlite/lib"
)

// checkpointPause is the least time between two background checkpoints.
// Each copies every page committed since the last and ends with two
// fsyncs. Checkpoints further apart are larger and stall the process's
// other work for longer; closer together, they sync more often. Measured
// with all roles in one process on two cores (BENCHMARKS.md, "Where the
// latency tails come from"): at 1,000 appends/s, 1 s between checkpoints
// took the append → visible p99 from 11–18 ms to 18–80 ms, and 10 ms
// brought its median over nine runs from 12.8 to 9.7 ms; but 10 ms also
// cost CreateOrder at its peak 9–24% and raised the mixed load's p99 at
// 1,400 requests/s from 23–36 to 35–70 ms, so 100 ms stays. A pause
// chosen by the last checkpoint's size (10 ms after a small one) kept
// most of the lag's gain and some of the mixed load's loss. Checkpoints
// without their fsyncs (synchronous=OFF on this connection) made the lag's
// p99 worse, not better (18–63 ms).
const checkpointPause = 100 * time.Millisecond

// writerCheckpointPages is the WAL size, in pages, at which the write
// connection checkpoints by itself (SQLite's wal_autocheckpoint): ten
// times SQLite's default, a backstop reached only when the background
// checkpoints fail or fall behind, so that the WAL stays bounded. SQLite
// ignores what its automatic checkpoint fails with, as the background
// checkpointer does: neither surfaces as an error of Apply.
const writerCheckpointPages = 10000

// checkpointer copies the WAL's pages into the database file on a
// connection of its own, after commits, so that no apply waits for it.
// SQLite's automatic checkpoint runs inside the commit that crosses its
// threshold, and with the fsync it ends with, that commit took several
// milliseconds: the tail of the time from an append to its visibility
// (BenchmarkVisibilityLag's p99 fell from 7 ms to 1 ms without it).
type checkpointer struct {
	db      *sql.DB
	grew    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	stopped sync.Once
	// failed holds what the last background checkpoint failed with; nil
	// once one got through (see ReadModel.CheckpointErr).
	failed atomic.Pointer[error]
}

// startCheckpointer opens the checkpoint connection to the database at
// path and starts checkpointing after commits.
func startCheckpointer(path string) (*checkpointer, error) {
	return openCheckpointer(path, dsnBusy(path, false, checkpointBusy))
}

// openCheckpointer is startCheckpointer over the DSN dsn of path.
func openCheckpointer(path, dsn string) (*checkpointer, error) {
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("projections: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	c := &checkpointer{db: db, grew: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c, nil
}

// committed tells the checkpointer that a commit grew the WAL.
func (c *checkpointer) committed() {
	select {
	case c.grew <- struct{}{}:
	default:
	}
}

func (c *checkpointer) run() {
	defer close(c.done)
	pause := time.NewTimer(checkpointPause)
	defer pause.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-c.grew:
		}
		// PASSIVE copies what no reader still needs and waits for no one.
		// What it leaves, busy or failing, stays in the WAL, which is
		// durable, for the next round or the writer's own checkpoint
		// (writerCheckpointPages), whose error SQLite ignores. A failure
		// (the disk full or failing) is kept for the runner to report:
		// until a checkpoint gets through the WAL grows, and every read
		// searches it.
		_, err := c.db.ExecContext(context.Background(), `PRAGMA wal_checkpoint(PASSIVE)`)
		switch {
		case err == nil:
			c.failed.Store(nil)
		case !busy(err):
			c.failed.Store(&err)
		}
		pause.Reset(checkpointPause)
		select {
		case <-c.stop:
			return
		case <-pause.C:
		}
	}
}

// busy reports whether err is SQLite's answer that another connection
// holds what a checkpoint needs (the writer's own checkpoint running):
// nothing failed, and the next round checkpoints.
func busy(err error) bool {
	var se interface{ Code() int }
	if !errors.As(err, &se) {
		return false
	}
	code := se.Code() & 0xff // the primary result code
	return code == sqlite3.SQLITE_BUSY || code == sqlite3.SQLITE_LOCKED
}

// checkpointBusy is how long the checkpoint connection waits for a lock
// (SQLite's busy timeout). Its PASSIVE checkpoints never wait; a retried
// scrub's TRUNCATE holds new writes back while it waits, so it gives up
// soon and tries again later (retryScrub).
const checkpointBusy = 50 * time.Millisecond

// truncate checkpoints the whole WAL into the database file and truncates
// it, as an erasure's scrub does, and reports whether it got through:
// not while a reader holds an older snapshot or a writer is busy. Errors
// are SQLite's, or ctx's.
func (c *checkpointer) truncate(ctx context.Context) (bool, error) {
	var busy, frames, done int
	if err := c.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &frames, &done); err != nil {
		return false, err
	}
	return busy == 0, nil
}

// close stops the checkpoints and closes the connection; closing again
// does nothing, as a ReadModel's Close may run twice.
func (c *checkpointer) close() error {
	c.stopped.Do(func() { close(c.stop) })
	<-c.done
	return c.db.Close()
}
