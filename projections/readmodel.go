package projections

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/order"
	_ "modernc.org/sqlite" // pure-Go SQLite driver, registered as "sqlite"
)

// ErrOrderNotFound reports an order the read model does not hold.
var ErrOrderNotFound = errors.New("projections: order not found")

// migration is one step of the schema: SQL, or for a step that rewrites
// rows in a way SQL cannot, a function, run in one transaction.
type migration struct {
	sql string
	run func(context.Context, *sql.Tx) error
}

// ordersV1Columns are the orders table's columns but its id, as schemas 1
// and 2 declared them: schema 2 moved the table to rowid order and changed
// nothing else.
const ordersV1Columns = `
		customer_id  TEXT NOT NULL,
		status       INTEGER NOT NULL,
		currency     TEXT NOT NULL,
		total        INTEGER NOT NULL,
		line_count   INTEGER NOT NULL,
		ship_country TEXT NOT NULL DEFAULT '',
		ship_city    TEXT NOT NULL DEFAULT '',
		created_at   INTEGER NOT NULL,
		updated_at   INTEGER NOT NULL,
		placed_at    INTEGER,
		paid_at      INTEGER,
		shipped_at   INTEGER,
		delivered_at INTEGER,
		cancelled_at INTEGER,
		revision     INTEGER NOT NULL,
		version      INTEGER NOT NULL,
		state        BLOB NOT NULL
	`

// migrations are applied in order; schema_version records how many ran.
// Never edit one that has shipped: append a new one.
var migrations = []migration{
	{sql: `CREATE TABLE orders (
		id           TEXT PRIMARY KEY,` + ordersV1Columns + `) WITHOUT ROWID;
	CREATE INDEX orders_created ON orders (created_at DESC, id DESC);
	CREATE INDEX orders_customer ON orders (customer_id, created_at DESC, id DESC);
	CREATE INDEX orders_status ON orders (status, created_at DESC, id DESC);
	CREATE TABLE customer_status (
		customer_id TEXT NOT NULL,
		status      INTEGER NOT NULL,
		count       INTEGER NOT NULL,
		PRIMARY KEY (customer_id, status)
	) WITHOUT ROWID;
	CREATE TABLE customer_spend (
		customer_id TEXT NOT NULL,
		currency    TEXT NOT NULL,
		amount      INTEGER NOT NULL,
		PRIMARY KEY (customer_id, currency)
	) WITHOUT ROWID;
	CREATE TABLE dead_letters (
		position    INTEGER PRIMARY KEY,
		order_id    TEXT NOT NULL,
		type        TEXT NOT NULL,
		reason      TEXT NOT NULL,
		recorded_at INTEGER NOT NULL
	);
	CREATE TABLE checkpoint (
		id       INTEGER PRIMARY KEY CHECK (id = 1),
		position INTEGER NOT NULL
	);
	INSERT INTO checkpoint (id, position) VALUES (1, 0);`},

	// Orders move to a rowid table. Order ids derived from request ids are
	// random, and a table clustered on them took each new order (with its
	// state blob) into a random leaf page, so once the file outgrew the
	// page cache every insert read and rewrote pages all over it. Now rows
	// append in arrival order and only the narrow unique index on id takes
	// random inserts.
	{sql: `CREATE TABLE orders_by_rowid (
		id           TEXT NOT NULL UNIQUE,` + ordersV1Columns + `);
	INSERT INTO orders_by_rowid SELECT id, customer_id, status, currency, total, line_count, ship_country, ship_city,
		created_at, updated_at, placed_at, paid_at, shipped_at, delivered_at, cancelled_at, revision, version, state
		FROM orders ORDER BY created_at, id;
	DROP TABLE orders;
	ALTER TABLE orders_by_rowid RENAME TO orders;
	CREATE INDEX orders_created ON orders (created_at DESC, id DESC);
	CREATE INDEX orders_customer ON orders (customer_id, created_at DESC, id DESC);
	CREATE INDEX orders_status ON orders (status, created_at DESC, id DESC);`},

	// Each order's state moves from JSON of the Go struct to the API's
	// Order message (see format.go).
	{run: migrateOrdersToProto},

	// Each order gets a number of its own (seq, an INTEGER PRIMARY KEY,
	// so the rowid itself and never renumbered by a VACUUM): the log
	// position of the event that brought it into the read model, its
	// creation. Every read model fed by the log numbers an order alike,
	// so a page token carries it from one query node to another. It
	// breaks ties in creation time instead of the order id. An index
	// entry of a rowid table holds its row's rowid anyway, so the list
	// indexes now key on the indexed columns alone: an entry of
	// orders_created was the time, the 36-byte id and the rowid, and is
	// now the time and the rowid. They are ascending too, so a new order's
	// entry goes at the end of orders_created and of its customer's range
	// in orders_customer instead of at the start of a range, where every
	// page split left a page half empty. On a file written by 103,294
	// CreateOrders the three indexes fell from 160 to 48 B per order and
	// the file from 544 to 271 B (BENCHMARKS.md).
	//
	// The orders already stored cannot learn their positions here (a row
	// keeps only its last event's): they are numbered below every log
	// position, -N to -1 in the order they were stored, until a rebuild.
	{sql: `CREATE TABLE orders_v4 (
		seq         INTEGER PRIMARY KEY,` + ordersV3Columns + `);
	INSERT INTO orders_v4 (seq, id, customer_id, status, created_at, revision, body)
		SELECT rowid - (SELECT IFNULL(MAX(rowid), 0) FROM orders) - 1, id, customer_id, status, created_at, revision, body
		FROM orders ORDER BY rowid;
	DROP TABLE orders;
	ALTER TABLE orders_v4 RENAME TO orders;
	CREATE INDEX orders_created ON orders (created_at);
	CREATE INDEX orders_customer ON orders (customer_id, created_at);
	CREATE INDEX orders_status ON orders (status, created_at);`},

	// An index of its own (orders_id) keeps the order ids unique instead
	// of the column's UNIQUE constraint, whose index SQLite will not
	// drop. A bulk fill now drops it with the list indexes and builds it
	// once, by sorting, at its end (finding its own rows by seq
	// meanwhile, see fillIndex). Order ids are random, so every insert
	// into that index went to a random page: with a million orders in the
	// file, each batch of 5,000 events of a rebuild dirtied about 4,000 of
	// its pages, and the commits wrote them all to the WAL. A
	// rebuild of a million events went from 42–51k to 69–75k events/s
	// (BENCHMARKS.md).
	{sql: `CREATE TABLE orders_v5 (
		seq         INTEGER PRIMARY KEY,
		id          TEXT NOT NULL,
		customer_id TEXT NOT NULL,
		status      INTEGER NOT NULL,
		created_at  INTEGER NOT NULL,
		revision    INTEGER NOT NULL,
		body        BLOB NOT NULL
	);
	INSERT INTO orders_v5 (seq, id, customer_id, status, created_at, revision, body)
		SELECT seq, id, customer_id, status, created_at, revision, body FROM orders ORDER BY seq;
	DROP TABLE orders;
	ALTER TABLE orders_v5 RENAME TO orders;
	CREATE UNIQUE INDEX orders_id ON orders (id);
	CREATE INDEX orders_created ON orders (created_at);
	CREATE INDEX orders_customer ON orders (customer_id, created_at);
	CREATE INDEX orders_status ON orders (status, created_at);`},

	// The checkpoint names the event at its position (checkpointEvent), so
	// that a log holding another event there is told from the log the
	// read model was built from: one that lost its last events and took
	// new ones at their positions since (a power loss under
	// NATS_SYNC=interval, NATS_URL naming another log) reaches past the
	// checkpoint again, and only its head was checked. '' for a
	// checkpoint written before, which the next apply fills.
	{sql: `ALTER TABLE checkpoint ADD COLUMN event TEXT NOT NULL DEFAULT ''`},
}

// saturatingSum is amount + excluded.amount held to int64's range, as
// money.AddSaturating holds a batch's deltas: SQLite turns an integer sum
// that overflows into a REAL, which the summary's read then fails to scan.
// A customer's lifetime spend can pass int64 (ten orders at the largest
// total an order may have); it then reads as the largest amount.
const saturatingSum = `CASE
		WHEN excluded.amount > 0 AND amount > 9223372036854775807 - excluded.amount THEN 9223372036854775807
		WHEN excluded.amount < 0 AND amount < (-9223372036854775807 - 1) - excluded.amount THEN (-9223372036854775807 - 1)
		ELSE amount + excluded.amount END`

// ReadModel is one SQLite database holding the orders read model and the
// checkpoint it was built to. Writes go through one connection (SQLite has
// one writer); reads use a pool that sees committed snapshots (WAL).
//
// The read pool keeps every connection it opens (opening one parses the
// DSN's pragmas and the schema again) and each connection keeps the read
// statements prepared on it, so a read neither opens nor prepares.
type ReadModel struct {
	path string
	w    *sql.DB
	r    *sql.DB

	getOrder, position, statusCounts, spend *sql.Stmt
	lists                                   sync.Map // query text → *sql.Stmt
	writes                                  writeStmts
	// scrubDue: an erasure's WAL checkpoint could not finish (readers held
	// old snapshots); the next apply tries again, and so does a retry in
	// the background (retryScrub). Not 0, it is the number (from scrubs)
	// of the scrub left due last. scrubRetried, when set (tests), is
	// called after each background retry.
	scrubDue       atomic.Uint64
	scrubs         atomic.Uint64
	scrubScheduled atomic.Bool
	scrubRetried   func()
	// scrubPause is how long a scrub left due waits for its retry
	// (scrubRetryPause; tests shorten it).
	scrubPause time.Duration
	// recent answers point reads of the orders written or read last.
	recent *recent
	// ck checkpoints the WAL after commits, off the apply path.
	ck *checkpointer
	// applyMu serialises applies; under it, applied is the checkpoint as
	// the last apply left it, in the open transaction or committed (valid
	// when appliedKnown), and durable as the last commit did. Only applies
	// on the write connection move the checkpoint, so reading it back from
	// the file at the start of every batch was a query per batch for a
	// value this process already knew: 17% of a one-event apply's CPU.
	applyMu      sync.Mutex
	applied      uint64
	appliedKnown bool
	durable      uint64
	// open is the transaction held applies left open (see apply), whose
	// rows the recent orders hold; nil when none is.
	open   *sql.Tx
	closed atomic.Bool
	// carry: the orders the last batches of a bulk fill wrote (nil
	// outside one).
	carry *carry
}

// writeStmts are Apply's statements, prepared on the write connection.
type writeStmts struct {
	position, loadOrder, upsertOrder, updateBody, updateStatus, addStatus, addSpend, setPosition *sql.Stmt
	// fill are a bulk fill's, which find rows by seq: the fill drops
	// orders_id, and the upsert's ON CONFLICT (id) needs it.
	fill struct{ rowAt, insert, insertMany, updateBody, updateStatus, updateRow *sql.Stmt }
}

// readConns is the read pool's size, open and idle alike: enough for the
// cores to keep busy while some reads wait on the disk, few enough that
// each connection's page cache stays warm.
const readConns = 8

// writerCacheSize is the write connection's page cache: 32 MiB instead of
// SQLite's 2 MiB default. Applies look up and update orders by id all over
// the id index, so with the default nearly every one read its pages from
// the file again. With it, on the floor benchmark at 100k orders the mixed
// load's peak rose from 3,157–3,180 to 3,588–4,167 requests/s, and a
// read model catching up with a log of a million events from scratch took
// 46 s instead of 58 s; RSS grows by up to the cache's size.
const writerCacheSize = "cache_size(-32768)"

// busyTimeout is how long a connection waits for a lock (SQLite's busy
// timeout), but the checkpoint connection's (checkpointBusy).
const busyTimeout = 10 * time.Second

func dsn(path string, readOnly bool) string { return dsnBusy(path, readOnly, busyTimeout) }

func dsnBusy(path string, readOnly bool, busy time.Duration) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	// NORMAL skips the fsync per commit in WAL mode. A power loss can lose
	// the last commits, but each commit holds its events and the
	// checkpoint together, so the projection simply re-applies them from
	// the log: the log, not this file, is the system of record.
	q.Add("_pragma", "synchronous(NORMAL)")
	// Deleted and overwritten content is zeroed, not left in free space:
	// erasing a forgotten customer's personal data must remove its bytes.
	q.Add("_pragma", "secure_delete(ON)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Add("_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", writerCheckpointPages))
		q.Add("_pragma", writerCacheSize)
	}
	return "file:" + path + "?" + q.Encode()
}

// OpenReadModel opens (creating if needed) the database at path and
// migrates its schema.
func OpenReadModel(ctx context.Context, path string) (*ReadModel, error) {
	w, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		return nil, fmt.Errorf("projections: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	if err := migrate(ctx, w, len(migrations)); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("projections: migrate %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("projections: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(readConns)
	r.SetMaxIdleConns(readConns)
	r.SetConnMaxIdleTime(0)
	r.SetConnMaxLifetime(0)
	return prepare(ctx, path, w, r)
}

// prepare returns the read model on w and r with its read statements
// prepared; on failure it closes both.
func prepare(ctx context.Context, path string, w, r *sql.DB) (*ReadModel, error) {
	m := &ReadModel{path: path, w: w, r: r, scrubPause: scrubRetryPause}
	for _, s := range []struct {
		db   *sql.DB
		stmt **sql.Stmt
		q    string
	}{
		{w, &m.writes.position, `SELECT position FROM checkpoint WHERE id = 1`},
		{w, &m.writes.loadOrder, `SELECT revision, customer_id, body FROM orders WHERE id = ?`},
		{w, &m.writes.upsertOrder, upsertOrder},
		{w, &m.writes.updateBody, updateBody},
		{w, &m.writes.updateStatus, updateStatus},
		{w, &m.writes.addStatus, `INSERT INTO customer_status (customer_id, status, count) VALUES (?, ?, ?)
			ON CONFLICT (customer_id, status) DO UPDATE SET count = count + excluded.count`},
		{w, &m.writes.addSpend, `INSERT INTO customer_spend (customer_id, currency, amount) VALUES (?, ?, ?)
			ON CONFLICT (customer_id, currency) DO UPDATE SET amount = ` + saturatingSum},
		{w, &m.writes.setPosition, `UPDATE checkpoint SET position = ?, event = ? WHERE id = 1`},
		{w, &m.writes.fill.rowAt, `SELECT id, revision, customer_id, body FROM orders WHERE seq = ?`},
		{w, &m.writes.fill.insert, insertOrder},
		{w, &m.writes.fill.insertMany, insertOrders},
		{w, &m.writes.fill.updateBody, updateBodyAt},
		{w, &m.writes.fill.updateStatus, updateStatusAt},
		{w, &m.writes.fill.updateRow, updateRowAt},
		// One statement is one implicit read transaction, so the order
		// and the checkpoint come from the same committed state without
		// a BEGIN and a second round trip; no row for the order leaves
		// its columns NULL.
		{r, &m.getOrder, `SELECT c.position, o.revision, o.customer_id, o.body FROM checkpoint c LEFT JOIN orders o ON o.id = ? WHERE c.id = 1`},
		{r, &m.position, `SELECT position FROM checkpoint WHERE id = 1`},
		{r, &m.statusCounts, `SELECT status, count FROM customer_status WHERE customer_id = ? AND count > 0`},
		{r, &m.spend, `SELECT currency, amount FROM customer_spend WHERE customer_id = ? AND amount <> 0`},
	} {
		var err error
		if *s.stmt, err = s.db.PrepareContext(ctx, s.q); err != nil {
			_ = m.Close()
			return nil, fmt.Errorf("projections: prepare on %s: %w", path, err)
		}
	}
	pos, err := m.Position(ctx)
	if err != nil {
		_ = m.Close()
		return nil, fmt.Errorf("projections: checkpoint of %s: %w", path, err)
	}
	m.recent, m.durable = newRecent(pos), pos
	ck, err := startCheckpointer(path)
	if err != nil {
		_ = m.Close()
		return nil, err
	}
	m.ck = ck
	// A process that died with an erasure's scrub left due (see scrub)
	// left the erased data in its WAL, and nothing else shrinks a WAL:
	// the file is scrubbed once as it opens, as after an erasure. One that
	// does not get through is left due, and the first apply's scrub
	// returns its error.
	_ = m.scrub(ctx)
	return m, nil
}

// apply runs the step in tx.
func (s migration) apply(ctx context.Context, tx *sql.Tx) error {
	if s.run != nil {
		return s.run(ctx, tx)
	}
	_, err := tx.ExecContext(ctx, s.sql)
	return err
}

// migrate applies the migrations up to the first n that db lacks.
func migrate(ctx context.Context, db *sql.DB, n int) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return err
	}
	var v int
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v); err != nil {
		return err
	}
	for i := v; i < n; i++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if err := migrations[i].apply(ctx, tx); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (?)`, i+1); err != nil {
			_ = tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

// indexBuildMmap is how much of the file a bulk fill's index build maps:
// the most this SQLite allows (SQLITE_MAX_MMAP_SIZE); a file larger than
// that is read past it as usual.
const indexBuildMmap = 0x7fff0000

// bulk readies a fresh read model for a replay of the whole log: no fsync
// (a crash mid-rebuild deletes the file anyway; the log is the source of
// truth), a smaller page cache, and the orders table's indexes dropped, to
// be built once from the finished table instead of updated on every
// insert; meanwhile the fill finds its rows by seq (fillIndex). The
// returned function builds the indexes (it fails if two rows share an id,
// which the fill never writes) and restores durability and the page
// cache; it must run before the model is swapped in. m must be empty: the
// fill's index knows only the rows the fill writes.
func (m *ReadModel) bulk(ctx context.Context) (func(context.Context) error, error) {
	rows, err := m.w.QueryContext(ctx, `SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'orders' AND sql IS NOT NULL`)
	if err != nil {
		return nil, err
	}
	var names, ddl []string
	for rows.Next() {
		var n, q string
		if err := rows.Scan(&n, &q); err != nil {
			rows.Close()
			return nil, err
		}
		names, ddl = append(names, n), append(ddl, q)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// The write pool holds one connection that stays open, so these
	// per-connection settings hold for every apply of the replay. Without
	// any index, the replay appends rows and rewrites recent ones: a page
	// cache of 16 MiB replays a million events as fast as one of 64 MiB
	// did (69–74k against 61–67k events/s for one-event orders, 67–69k
	// against 59–68k when an order's events are 100,000 apart, so that
	// its row is read back), for 48 MiB less memory.
	stmts := []string{`PRAGMA synchronous = OFF`, `PRAGMA cache_size = -16384`}
	for _, n := range names {
		stmts = append(stmts, `DROP INDEX "`+n+`"`)
	}
	for _, q := range stmts {
		if _, err := m.w.ExecContext(ctx, q); err != nil {
			return nil, err
		}
	}
	// Nobody reads a model being filled, and its batches would only churn
	// the cache; the carry keeps what the next batches fold on from.
	m.recent.pause()
	m.applyMu.Lock()
	m.carry = newCarry()
	for i, n := range names {
		if n == customerIndexName {
			m.carry.customerIndex = ddl[i]
		}
	}
	m.applyMu.Unlock()
	return func(ctx context.Context) error {
		m.applyMu.Lock()
		m.carry = nil
		m.applyMu.Unlock()
		// Each CREATE INDEX reads the whole table: mapped, its pages are
		// not copied into the page cache one pread at a time. At a
		// million orders that built the four indexes in 3.4–4.1 s
		// instead of 4.4–4.8 s. Reads do not map the file (it did not
		// help them; BENCHMARKS.md), so the writer stops after.
		if _, err := m.w.ExecContext(ctx, `PRAGMA mmap_size = `+strconv.Itoa(indexBuildMmap)); err != nil {
			return err
		}
		tx, err := m.w.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		built, err := indexesOf(ctx, tx)
		if err != nil {
			_ = tx.Rollback()
			return err
		}
		for i, q := range ddl {
			if built[names[i]] {
				continue // built by the fill (the customers' index, at an erasure)
			}
			if _, err := tx.ExecContext(ctx, q); err != nil {
				_ = tx.Rollback()
				return err
			}
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		// Back to the DSN's settings before live applies arrive; the
		// checkpoint writes the replay into the file and syncs it once.
		for _, q := range []string{`PRAGMA mmap_size = 0`, `PRAGMA synchronous = NORMAL`, `PRAGMA ` + writerCacheSize} {
			if _, err := m.w.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		// The fill was written without a sync: until this checkpoint gets
		// through, a power loss could take the indexes (or more) from a
		// file about to be made current. A checkpoint that stays busy (the
		// background one holds the lock, say) fails the fill instead.
		if done, err := m.truncateWAL(ctx); err != nil {
			return err
		} else if !done {
			return errors.New("projections: the filled read model's WAL could not be checkpointed: readers or another checkpoint held it")
		}
		pos, err := m.Position(ctx)
		if err != nil {
			return err
		}
		m.recent.resume(pos)
		return nil
	}, nil
}

// customerIndexName is the index of orders by customer, which an
// erasure looks its customer's orders up by.
const customerIndexName = "orders_customer"

// indexesOf returns the names of the orders table's indexes as tx sees
// them.
func indexesOf(ctx context.Context, tx *sql.Tx) (map[string]bool, error) {
	rows, err := tx.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'orders'`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	names := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		names[n] = true
	}
	return names, rows.Err()
}

// checkpoint returns the checkpoint and the event the log held at its
// position when it was applied (checkpointEvent; empty when it was
// written before checkpoints named their event, or is 0).
func (m *ReadModel) checkpoint(ctx context.Context) (pos uint64, event string, err error) {
	err = m.r.QueryRowContext(ctx, `SELECT position, event FROM checkpoint WHERE id = 1`).Scan(&pos, &event)
	return pos, event, err
}

// Path is the database file.
func (m *ReadModel) Path() string { return m.path }

// Close closes the database. The prepared statements go with the
// connections they were prepared on: closing each Stmt first would wait
// for the connection a running statement holds, and a Close called while
// Apply runs (a shutdown mid-batch) would then never return.
func (m *ReadModel) Close() error {
	// A transaction held open keeps its connection after the pool is
	// closed; it is not committed any more.
	m.closed.Store(true)
	var err error
	if m.ck != nil {
		err = m.ck.close()
	}
	return errors.Join(err, m.r.Close(), m.w.Close())
}

// release closes the read model and returns once no connection to its
// file is open, so that the file can be overwritten: database/sql closes
// a connection a query still holds only when the query ends. A
// transaction a held apply left open would keep its connection for good,
// so it is abandoned first. It waits at most releaseWait: a query that
// never ends (a leaked one) must not keep the old file, and what it holds
// of erased customers, for ever.
func (m *ReadModel) release() {
	m.applyMu.Lock()
	m.rollback()
	m.applyMu.Unlock()
	_ = m.Close()
	for end := time.Now().Add(releaseWait); m.openConns() > 0 && time.Now().Before(end); {
		if releaseWaiting != nil {
			releaseWaiting()
		}
		time.Sleep(releasePoll)
	}
}

// releaseWaiting, when set (by a test), is called each time release finds
// a connection still open and waits.
var releaseWaiting func()

// releaseWait bounds release's wait for the queries still running on a
// replaced model: they started before its swap, more than swapGrace ago.
const releaseWait = time.Minute

// releasePoll is how often release looks whether the last query on a
// closed read model has ended.
const releasePoll = 50 * time.Millisecond

// openConns counts the connections open to the file.
func (m *ReadModel) openConns() int {
	n := m.r.Stats().OpenConnections + m.w.Stats().OpenConnections
	if m.ck != nil {
		n += m.ck.db.Stats().OpenConnections
	}
	return n
}

// listStmt returns the prepared statement for a list query, preparing it
// on first use. The filters combine into a handful of query texts, so the
// cache stays small.
func (m *ReadModel) listStmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := m.lists.Load(q); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := m.r.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if prev, loaded := m.lists.LoadOrStore(q, st); loaded {
		_ = st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// Position returns the checkpoint: the log position of the last applied
// event.
func (m *ReadModel) Position(ctx context.Context) (uint64, error) {
	var p uint64
	err := m.writes.position.QueryRowContext(ctx).Scan(&p)
	return p, err
}

// CheckpointErr returns what the last checkpoint of the write-ahead log
// into the file, run in the background after commits, failed with (the
// disk full or failing, say), and nil once one got through. Applies do not
// fail for it: their commits are in the log, which is durable; but until
// a checkpoint gets through it grows, and reads slow down.
func (m *ReadModel) CheckpointErr() error {
	if m.ck == nil {
		return nil
	}
	if err := m.ck.failed.Load(); err != nil {
		return *err
	}
	return nil
}

// DeadLettered returns the number of events recorded as dead letters.
func (m *ReadModel) DeadLettered(ctx context.Context) (uint64, error) {
	var n uint64
	err := m.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM dead_letters`).Scan(&n)
	return n, err
}

// DeadLetter is an event the projection could not apply.
type DeadLetter struct {
	Position   uint64
	OrderID    string
	Type       string
	Reason     string
	RecordedAt time.Time
}

// DeadLetters lists the dead letters, oldest first.
func (m *ReadModel) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	rows, err := m.r.QueryContext(ctx, `SELECT position, order_id, type, reason, recorded_at FROM dead_letters ORDER BY position`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []DeadLetter
	for rows.Next() {
		var d DeadLetter
		var at int64
		if err := rows.Scan(&d.Position, &d.OrderID, &d.Type, &d.Reason, &at); err != nil {
			return nil, err
		}
		d.RecordedAt = time.Unix(0, at).UTC()
		out = append(out, d)
	}
	return out, rows.Err()
}

// Order is one order as the read model holds it.
type Order struct {
	State    order.State
	Revision uint64 // position of the order's last event
}

// snapshot runs fn in one read transaction, so the answer and the position
// reported with it come from the same committed state. Only reads of
// several statements need it; a point read is one statement.
func (m *ReadModel) snapshot(ctx context.Context, fn func(tx *sql.Tx) error) (position uint64, err error) {
	tx, err := m.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback() }()
	if err := tx.StmtContext(ctx, m.position).QueryRowContext(ctx).Scan(&position); err != nil {
		return 0, err
	}
	if err := fn(tx); err != nil {
		return 0, err
	}
	return position, nil
}

// GetOrder returns one order, folded, and the position it is current at.
// It returns ErrOrderNotFound, with the position the order was unknown at,
// when the order is unknown.
func (m *ReadModel) GetOrder(ctx context.Context, id string) (Order, uint64, error) {
	rev, pb, pos, err := m.getOrderMessage(ctx, id)
	if err != nil {
		return Order{}, pos, err
	}
	return Order{State: convert.OrderFromProto(pb), Revision: rev}, pos, nil
}

// GetOrderMessage returns one order as the read model stores it, the API's
// Order message, and the position it is current at: nothing is folded or
// converted on the way. It returns ErrOrderNotFound, with the position the
// order was unknown at, when the order is unknown, and an error when the
// stored body does not parse.
func (m *ReadModel) GetOrderMessage(ctx context.Context, id string) (*ordersv1.Order, uint64, error) {
	_, pb, pos, err := m.getOrderMessage(ctx, id)
	return pb, pos, err
}

// getOrderMessage is getOrderRow with the row's body read (readBody).
func (m *ReadModel) getOrderMessage(ctx context.Context, id string) (rev uint64, o *ordersv1.Order, pos uint64, err error) {
	row, pos, err := m.getOrderRow(ctx, id)
	if err != nil {
		return 0, nil, pos, err
	}
	if o, err = readBody(id, row.customer, row.body); err != nil {
		return 0, nil, 0, err
	}
	return row.rev, o, pos, nil
}

// OrderWire is GetOrderMessage with the message encoded: the bytes a
// client receives for the Order that GetOrderMessage returns, made from
// the stored body without building the message (see appendOrderWire).
// Its errors are GetOrderMessage's.
func (m *ReadModel) OrderWire(ctx context.Context, id string) ([]byte, uint64, error) {
	row, pos, err := m.getOrderRow(ctx, id)
	if err != nil {
		return nil, pos, err
	}
	o, err := appendOrderWire(nil, id, row.customer, row.body)
	if err != nil {
		return nil, 0, err
	}
	return o, pos, nil
}

// getOrderRow reads one order's stored row with the position it is
// current at: from the recent orders when it is one, else in one
// statement. An order the recent orders do not hold has nothing applied
// but not committed (those rows are always held), so its row in the file
// is current as of the recent orders' position too, which may be ahead of
// the file's checkpoint. It returns ErrOrderNotFound, with that position,
// for an unknown order.
func (m *ReadModel) getOrderRow(ctx context.Context, id string) (row storedRow, pos uint64, err error) {
	row, pos, ok := m.recent.get(id)
	if ok {
		return row, pos, nil
	}
	at := pos
	var sqlPos uint64
	var r sql.Null[uint64]
	var customer sql.NullString
	if err := m.getOrder.QueryRowContext(ctx, id).Scan(&sqlPos, &r, &customer, &row.body); err != nil {
		return storedRow{}, 0, err
	}
	pos = max(sqlPos, at)
	if !r.Valid {
		return storedRow{}, pos, ErrOrderNotFound
	}
	row.rev, row.customer = r.V, customer.String
	m.recent.read(sqlPos, id, row)
	return row, pos, nil
}

// ListFilter selects orders for List. Creation times are stored as int64
// Unix nanoseconds (1677-09-21 to 2262-04-11); a bound outside that range
// is clamped to it, so a CreatedAfter before it or a CreatedBefore after it
// bounds nothing, and a CreatedAfter after it or a CreatedBefore before it
// matches nothing.
type ListFilter struct {
	CustomerID    string
	Status        order.Status // StatusUnspecified: any
	CreatedAfter  time.Time    // inclusive; zero: unbounded
	CreatedBefore time.Time    // exclusive; zero: unbounded
}

// unixNanos returns t as Unix nanoseconds, clamped to the int64 range
// (time.Time.UnixNano's result is undefined outside it).
func unixNanos(t time.Time) int64 {
	switch {
	case t.Before(minNanoTime):
		return math.MinInt64
	case t.After(maxNanoTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

var (
	minNanoTime = time.Unix(0, math.MinInt64)
	maxNanoTime = time.Unix(0, math.MaxInt64)
)

// TimeBounds returns the filter's creation-time bounds as they apply, in
// Unix nanoseconds: after (inclusive) is math.MinInt64 and before
// (exclusive) math.MaxInt64 when they bound nothing.
func (f ListFilter) TimeBounds() (after, before int64) {
	after, before = math.MinInt64, math.MaxInt64
	if !f.CreatedAfter.IsZero() {
		after = unixNanos(f.CreatedAfter)
	}
	if !f.CreatedBefore.IsZero() {
		before = unixNanos(f.CreatedBefore)
	}
	return after, before
}

// Cursor is a keyset position, the last order of the previous page: the
// orders after it in the list's order come next. Orders created at the
// same instant rank by their seq, the log position of the event that
// brought each into the read model (its creation), so every read model
// fed by the log ranks them alike; orders stored before schema 4 keep
// negative numbers in the order they were stored, until a rebuild.
//
// A cursor with HasSeq false (a page token issued before schema 4) names
// its order by ID instead, whose seq the list looks up; if the model does
// not hold that order, the rest of its instant is skipped.
type Cursor struct {
	CreatedAt int64 // unix nanoseconds
	Seq       int64
	HasSeq    bool
	ID        string
}

// ListOrders returns up to limit orders matching f, newest first (by
// creation time, then by seq, the later first), strictly after cursor
// (nil: from the newest), folded, and the read model's position.
func (m *ReadModel) ListOrders(ctx context.Context, f ListFilter, after *Cursor, limit int) ([]Order, uint64, error) {
	var out []Order
	pos, err := m.list(ctx, f, after, limit, func(rev uint64, c Cursor, customer string, body []byte) error {
		o, err := readBody(c.ID, customer, body)
		if err != nil {
			return err
		}
		out = append(out, Order{State: convert.OrderFromProto(o), Revision: rev})
		return nil
	})
	return out, pos, err
}

// ListOrderWire is ListOrders answering with each order encoded as
// OrderWire encodes one (the orders share one buffer), and with the
// cursor after each.
func (m *ReadModel) ListOrderWire(ctx context.Context, f ListFilter, after *Cursor, limit int) (orders [][]byte, cursors []Cursor, pos uint64, err error) {
	var buf []byte
	var ends []int
	pos, err = m.list(ctx, f, after, limit, func(_ uint64, c Cursor, customer string, body []byte) error {
		var err error
		if buf, err = appendOrderWire(buf, c.ID, customer, body); err != nil {
			return err
		}
		ends, cursors = append(ends, len(buf)), append(cursors, c)
		return nil
	})
	if err != nil {
		return nil, nil, 0, err
	}
	orders = make([][]byte, len(ends))
	start := 0
	for i, end := range ends {
		orders[i], start = buf[start:end:end], end
	}
	return orders, cursors, pos, nil
}

// list runs the list query for f, after and limit in one snapshot, calling
// each with every row's revision, cursor, customer and stored body, and
// returns the position. each's error ends the list with it.
func (m *ReadModel) list(ctx context.Context, f ListFilter, after *Cursor, limit int, each func(rev uint64, c Cursor, customer string, body []byte) error) (uint64, error) {
	q, args := listQuery(f, after, limit)
	st, err := m.listStmt(ctx, q)
	if err != nil {
		return 0, err
	}
	return m.snapshot(ctx, func(tx *sql.Tx) error {
		rows, err := tx.StmtContext(ctx, st).QueryContext(ctx, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var rev uint64
			var c Cursor
			var customer string
			var body sql.RawBytes
			if err := rows.Scan(&rev, &c.ID, &customer, &body, &c.CreatedAt, &c.Seq); err != nil {
				return err
			}
			c.HasSeq = true
			if err := each(rev, c, customer, body); err != nil {
				return err
			}
		}
		return rows.Err()
	})
}

// listQuery is the list query's text and arguments.
func listQuery(f ListFilter, after *Cursor, limit int) (string, []any) {
	q := `SELECT revision, id, customer_id, body, created_at, seq FROM orders WHERE 1=1`
	var args []any
	if f.CustomerID != "" {
		q += ` AND customer_id = ?`
		args = append(args, f.CustomerID)
	}
	if f.Status != order.StatusUnspecified {
		q += ` AND status = ?`
		args = append(args, int(f.Status))
	}
	from, until := f.TimeBounds()
	if from > math.MinInt64 {
		q += ` AND created_at >= ?`
		args = append(args, from)
	}
	if until < math.MaxInt64 {
		q += ` AND created_at < ?`
		args = append(args, until)
	}
	// The bound on created_at alone lets SQLite seek the index to the
	// cursor instead of testing every newer entry.
	switch {
	case after != nil && after.HasSeq:
		// This node's own number for the cursor's order, when it has
		// the order: one stored before schema 4 is numbered below every
		// log position here, while the node that issued the token
		// (rebuilt since, or new) numbers it by its creation position.
		q += ` AND created_at <= ? AND (created_at < ? OR seq < COALESCE((SELECT seq FROM orders WHERE id = ?), ?))`
		args = append(args, after.CreatedAt, after.CreatedAt, after.ID, after.Seq)
	case after != nil:
		q += ` AND created_at <= ? AND (created_at < ? OR seq < (SELECT seq FROM orders WHERE id = ?))`
		args = append(args, after.CreatedAt, after.CreatedAt, after.ID)
	}
	q += ` ORDER BY created_at DESC, seq DESC LIMIT ?`
	return q, append(args, limit)
}

// CustomerSummary aggregates one customer's orders.
type CustomerSummary struct {
	CustomerID string
	ByStatus   map[order.Status]int64
	Spend      map[string]int64 // currency → minor units paid, net of refunds
}

// GetCustomerSummary returns a customer's summary (empty for an unknown
// customer) and the read model's position. Statuses with no orders and
// currencies whose spend nets to zero are left out, so the answer does not
// depend on how events happened to be batched.
func (m *ReadModel) GetCustomerSummary(ctx context.Context, customerID string) (CustomerSummary, uint64, error) {
	s := CustomerSummary{CustomerID: customerID, ByStatus: map[order.Status]int64{}, Spend: map[string]int64{}}
	pos, err := m.snapshot(ctx, func(tx *sql.Tx) error {
		rows, err := tx.StmtContext(ctx, m.statusCounts).QueryContext(ctx, customerID)
		if err != nil {
			return err
		}
		for rows.Next() {
			var st, n int64
			if err := rows.Scan(&st, &n); err != nil {
				rows.Close()
				return err
			}
			s.ByStatus[order.Status(st)] = n
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = tx.StmtContext(ctx, m.spend).QueryContext(ctx, customerID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var cur string
			var amt int64
			if err := rows.Scan(&cur, &amt); err != nil {
				return err
			}
			s.Spend[cur] = amt
		}
		return rows.Err()
	})
	return s, pos, err
}
