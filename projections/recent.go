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
// It answers as of pos, the position of the read model's last commit. Every
// commit puts the rows it wrote before a reader can see its position, so an
// entry is never older than pos; a row read from the file enters only when
// no commit came between that read and its entry.
type recent struct {
	mu   sync.RWMutex
	pos  uint64
	rows map[string]storedRow
	off  bool // a bulk fill: nothing is kept, nothing answered
}

// storedRow is one order's row as the orders table holds it.
type storedRow struct {
	rev      uint64
	customer string
	body     []byte
}

func newRecent(pos uint64) *recent {
	return &recent{pos: pos, rows: make(map[string]storedRow)}
}

// get returns id's row and the position it is current at.
func (c *recent) get(id string) (storedRow, uint64, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	r, ok := c.rows[id]
	return r, c.pos, ok && !c.off
}

// committed records a commit at pos that wrote rows.
func (c *recent) committed(pos uint64, rows map[string]storedRow) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pos = pos
	if c.off {
		return
	}
	for id, r := range rows {
		c.rows[id] = r
	}
	bounded.Trim(c.rows, recentOrders)
}

// read offers a row read from the file at position pos.
func (c *recent) read(pos uint64, id string, r storedRow) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.off || pos != c.pos {
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
	c.off, c.rows = true, make(map[string]storedRow)
}

// resume starts the cache again, current at pos.
func (c *recent) resume(pos uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off, c.pos = false, pos
}
