package projections

import "github.com/orderstream/orderstream/order"

// refundAmount reports the amount a refund event gives back, so lifetime
// spend is net of refunds.
func refundAmount(e order.Event) (int64, bool) {
	if r, ok := e.(order.RefundIssued); ok {
		return r.Amount, true
	}
	return 0, false
}
