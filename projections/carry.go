package projections

// carryOrders bounds each of the carry's two generations, so a rebuild
// holds between one and two times as many decoded orders (tens of MB): in
// a log where an order's events are tens of thousands of events apart
// (ordersbench's mixed load picks among 10,000 open orders), 4,096 caught
// too few of them to matter.
const carryOrders = 32768

// carry holds, during a rebuild's bulk fill, the orders the last batches
// wrote, as they folded them, so that a later batch folds on from them
// instead of reading each row back and decoding its body: in a log whose
// orders live longer than a batch, that was 43% of the writer's CPU
// (BenchmarkRebuild with -rebuild.spread 5000, every event of an order in
// a batch of its own).
//
// Every change a batch makes to a row goes through load and is written
// from its state (a fold, and an erasure's forget too), so what the carry
// holds is what the file holds. It is used under ReadModel.applyMu.
//
// An order is kept as the last batch that changed it folded it, so its
// row's indexed columns are keysOf its state, untouched until a batch
// takes it again.
//
// It also holds the fill's index of the rows the fill wrote (rows), which
// outlives the generations: it is how a batch finds an order's row once
// the carry has dropped it.
type carry struct {
	cur, prev map[string]carried
	rows      *fillIndex
	// customerIndex is the definition of the index of orders by
	// customer, which the fill dropped; customerIndexed, that the first
	// erasure the fill met built it (see batch.customerOrders).
	customerIndex   string
	customerIndexed bool
}

// carried is an order as a batch folded it, and the seq of its row.
type carried struct {
	o   *Order
	seq int64
}

func newCarry() *carry {
	return &carry{cur: map[string]carried{}, prev: map[string]carried{}, rows: newFillIndex()}
}

// take removes and returns the order id and its row's seq, if the carry
// holds it: the batch that takes it owns it, and gives it back when it
// commits (keep).
func (c *carry) take(id string) (carried, bool) {
	if o, ok := c.cur[id]; ok {
		delete(c.cur, id)
		return o, true
	}
	if o, ok := c.prev[id]; ok {
		delete(c.prev, id)
		return o, true
	}
	return carried{}, false
}

// keep takes the orders a committed batch wrote, the oldest generation
// dropped when the newest is full. A batch that looked up no order but
// its own created them all: in such a log (every event a new order) the
// carry would be work and memory for nothing, so it keeps none until a
// batch looks up orders again.
func (c *carry) keep(b *batch) {
	if b.lookups == 0 {
		c.reset()
		return
	}
	for _, d := range b.dirty {
		if len(c.cur) >= carryOrders {
			c.prev, c.cur = c.cur, make(map[string]carried, carryOrders)
		}
		c.cur[d.id] = carried{b.states[d.id], b.seqs[d.id]}
	}
}

// reset forgets every order it carries; it keeps the fill's index.
func (c *carry) reset() {
	clear(c.cur)
	clear(c.prev)
}
