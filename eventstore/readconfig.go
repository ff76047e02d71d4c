package eventstore

import "time"

// ReadConfig is a batch read's options applied to the defaults
// (NewReadConfig). It is exported so that other implementations of
// ReadBatches and FollowBatches (memstore) read the options alike.
type ReadConfig struct {
	Orders    []string      // ForOrders: distinct ids; none selects every order
	StartTime time.Time     // StartTime; zero when not given
	UpTo      uint64        // UpTo, when Bounded
	Bounded   bool          // UpTo was given
	BatchSize int           // BatchSize
	BatchWait time.Duration // BatchWait; 0 for ReadBatches, which never waits
}

// NewReadConfig returns the options of a batch read from position from,
// following the log (FollowBatches) or not (ReadBatches), applied to the
// defaults, or the error the read yields for them: one wrapping
// ErrInvalidOption or ErrInvalidOrderID.
func NewReadConfig(from uint64, follow bool, opts ...ReadOption) (ReadConfig, error) {
	o, err := newReadOptions(from, follow, opts)
	if err != nil {
		return ReadConfig{}, err
	}
	return ReadConfig{Orders: o.orders, StartTime: o.startTime, UpTo: o.upTo, Bounded: o.bounded, BatchSize: o.batchSize, BatchWait: o.batchWait}, nil
}
