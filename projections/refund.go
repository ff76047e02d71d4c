package projections

import "github.com/orderstream/orderstream/order"

// refundAmount reports the amount a refund event gives back, so lifetime
// spend is net of refunds. It knows no refund event yet.
func refundAmount(order.Event) (int64, bool) { return 0, false }
