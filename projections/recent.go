package projections

import (
	"sync"

	"github.com/orderstream/orderstream/internal/bounded"
)

// recentOrders is how many orders a read model keeps in memory as last
// written (about 0.5 KB each with the map's overhead, so some 16 MiB at the
// most): enough to hold the orders a busy system is working on, which are
// the ones read most.
const recentOrders = 32 << 10

// recent holds the stored rows of the orders the read model wrote or read
// last, so that a point read of a busy order answers from memory rather
// than from SQLite: in WAL mode each commit empties every reader's page
// cache, and under a steady stream of commits a point read otherwise walks
// two B-trees with a system call per page.
//
// It answers as of pos, the position of the read model's last apply,
// committed or not. The rows of the open transaction (held) are what
// makes an apply visible before its commit: they are answered first and
// never evicted, since the file does not have them yet. Every apply puts
// the rows it wrote before a reader can see its position, so an entry is
// never older than pos; a row read from the file enters only when it is
// current at pos, that is when no apply came between that read and its
// entry and no transaction is open.
type recent struct {
	mu   sync.RWMutex
	pos  uint64
	rows map[string]storedRow // committed rows, at most recentOrders
	held map[string]storedRow // rows of the open transaction
	off  bool                 // a bulk fill: nothing is kept, nothing answered
}

// storedRow is one order's row as the orders table holds it.
type storedRow struct {
	rev      uint64
	customer string
	body     []byte
}

func newRecent(pos uint64) *recent {
	return &recent{pos: pos, rows: make(map[string]storedRow), held: make(map[string]storedRow)}
}

// get returns id's row and, whether or not it is kept, the position the
// recent orders answer at.
func (c *recent) get(id string) (storedRow, uint64, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.off {
		return storedRow{}, c.pos, false
	}
	if r, ok := c.held[id]; ok {
		return r, c.pos, true
	}
	r, ok := c.rows[id]
	return r, c.pos, ok
}

// staged records an apply at pos, not yet committed, that wrote rows,
// and returns how many orders the open transaction holds now.
func (c *recent) staged(pos uint64, rows map[string]storedRow) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pos = pos
	if c.off {
		return 0
	}
	for id, r := range rows {
		c.held[id] = r
	}
	return len(c.held)
}

// committed records that the open transaction's rows reached the file:
// they become ordinary entries, which may be evicted.
func (c *recent) committed() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.held) == 0 {
		return
	}
	for id, r := range c.held {
		c.rows[id] = r
	}
	clear(c.held)
	bounded.Trim(c.rows, recentOrders)
}

// rolledBack drops the rows of a transaction that did not commit, and
// every other row: a commit that reported an error may have reached the
// file all the same, and then the rows kept from before it are older than
// the file's, which the next apply would fold on. It answers at pos again,
// the last checkpoint known to be in the file.
func (c *recent) rolledBack(pos uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.held)
	clear(c.rows)
	c.pos = pos
}

// read offers a row read from the file at position pos.
func (c *recent) read(pos uint64, id string, r storedRow) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.off || pos != c.pos || len(c.held) > 0 {
		return
	}
	if _, ok := c.rows[id]; !ok {
		bounded.Put(c.rows, id, r, recentOrders)
	}
}

// pause empties the cache and stops it for a bulk fill.
func (c *recent) pause() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off, c.rows, c.held = true, make(map[string]storedRow), make(map[string]storedRow)
}

// resume starts the cache again, current at pos.
func (c *recent) resume(pos uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off, c.pos = false, pos
}
