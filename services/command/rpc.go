package command

import (
	"context"

	"github.com/orderstream/orderstream/api/convert"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/rpcerr"
	"github.com/orderstream/orderstream/order"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// CreateOrder starts a draft order. See ordersv1.OrderCommandServiceServer.
func (s *Service) CreateOrder(ctx context.Context, req *ordersv1.CreateOrderRequest) (*ordersv1.CreateOrderResponse, error) {
	id, generated, canonical := req.GetOrderId(), false, req
	if id == "" {
		id, generated = derivedOrderID(req.GetRequestId()), true
		// The request names the order its id derives, whether it says so
		// or not: a retry that spells the id out is the same request.
		canonical = proto.CloneOf(req)
		canonical.OrderId = id
	}
	r, err := s.execute(ctx, canonical, target{orderID: id, generated: generated}, order.CreateOrder{
		OrderID:    id,
		CustomerID: req.GetCustomerId(),
		Currency:   req.GetCurrency(),
		Lines:      convert.LinesFromProto(req.GetLines()),
		Shipping:   convert.AddressFromProto(req.GetShippingAddress()),
	})
	if err != nil {
		return nil, err
	}
	return &ordersv1.CreateOrderResponse{Order: r.order(), Revision: r.revision, Position: r.position}, nil
}

// AddItem adds a line to a draft order.
func (s *Service) AddItem(ctx context.Context, req *ordersv1.AddItemRequest) (*ordersv1.AddItemResponse, error) {
	r, err := s.change(ctx, req, order.AddItem{
		SKU: req.GetSku(), Quantity: req.GetQuantity(), UnitPrice: req.GetUnitPrice(),
	})
	if err != nil {
		return nil, err
	}
	return &ordersv1.AddItemResponse{Order: r.order(), Revision: r.revision, Position: r.position}, nil
}

// RemoveItem removes a line from a draft order.
func (s *Service) RemoveItem(ctx context.Context, req *ordersv1.RemoveItemRequest) (*ordersv1.RemoveItemResponse, error) {
	r, err := s.change(ctx, req, order.RemoveItem{SKU: req.GetSku()})
	if err != nil {
		return nil, err
	}
	return &ordersv1.RemoveItemResponse{Order: r.order(), Revision: r.revision, Position: r.position}, nil
}

// ChangeItemQuantity sets a line's quantity in a draft order.
func (s *Service) ChangeItemQuantity(ctx context.Context, req *ordersv1.ChangeItemQuantityRequest) (*ordersv1.ChangeItemQuantityResponse, error) {
	r, err := s.change(ctx, req, order.ChangeItemQuantity{
		SKU: req.GetSku(), Quantity: req.GetQuantity(),
	})
	if err != nil {
		return nil, err
	}
	return &ordersv1.ChangeItemQuantityResponse{Order: r.order(), Revision: r.revision, Position: r.position}, nil
}

// SetShippingAddress sets the shipping address before payment.
func (s *Service) SetShippingAddress(ctx context.Context, req *ordersv1.SetShippingAddressRequest) (*ordersv1.SetShippingAddressResponse, error) {
	if req.GetShippingAddress() == nil {
		return nil, rpcerr.Invalid("shipping_address", "required")
	}
	r, err := s.change(ctx, req, order.SetShippingAddress{
		Address: *convert.AddressFromProto(req.GetShippingAddress()),
	})
	if err != nil {
		return nil, err
	}
	return &ordersv1.SetShippingAddressResponse{Order: r.order(), Revision: r.revision, Position: r.position}, nil
}

// PlaceOrder submits a draft order.
func (s *Service) PlaceOrder(ctx context.Context, req *ordersv1.PlaceOrderRequest) (*ordersv1.PlaceOrderResponse, error) {
	r, err := s.change(ctx, req, order.PlaceOrder{Tax: req.GetTax()})
	if err != nil {
		return nil, err
	}
	return &ordersv1.PlaceOrderResponse{Order: r.order(), Revision: r.revision, Position: r.position}, nil
}

// RecordPayment records a payment provider's outcome.
func (s *Service) RecordPayment(ctx context.Context, req *ordersv1.RecordPaymentRequest) (*ordersv1.RecordPaymentResponse, error) {
	var authorized bool
	switch req.GetOutcome() {
	case ordersv1.PaymentOutcome_PAYMENT_OUTCOME_AUTHORIZED:
		authorized = true
	case ordersv1.PaymentOutcome_PAYMENT_OUTCOME_DECLINED:
	default:
		return nil, rpcerr.Invalid("outcome", "must be PAYMENT_OUTCOME_AUTHORIZED or PAYMENT_OUTCOME_DECLINED")
	}
	r, err := s.change(ctx, req, order.RecordPayment{
		Authorized: authorized, PaymentRef: req.GetPaymentRef(), Amount: req.GetAmount(),
		Currency: req.GetCurrency(), Reason: req.GetReason(),
	})
	if err != nil {
		return nil, err
	}
	return &ordersv1.RecordPaymentResponse{Order: r.order(), Revision: r.revision, Position: r.position}, nil
}

// CancelOrder cancels an order that has not shipped.
func (s *Service) CancelOrder(ctx context.Context, req *ordersv1.CancelOrderRequest) (*ordersv1.CancelOrderResponse, error) {
	r, err := s.change(ctx, req, order.CancelOrder{Reason: req.GetReason()})
	if err != nil {
		return nil, err
	}
	return &ordersv1.CancelOrderResponse{Order: r.order(), Revision: r.revision, Position: r.position}, nil
}

// RecordRefund records the refund of a cancelled paid order.
func (s *Service) RecordRefund(ctx context.Context, req *ordersv1.RecordRefundRequest) (*ordersv1.RecordRefundResponse, error) {
	r, err := s.change(ctx, req, order.RecordRefund{
		RefundRef: req.GetRefundRef(), Amount: req.GetAmount(),
	})
	if err != nil {
		return nil, err
	}
	return &ordersv1.RecordRefundResponse{Order: r.order(), Revision: r.revision, Position: r.position}, nil
}

// ShipOrder records shipment of a paid order.
func (s *Service) ShipOrder(ctx context.Context, req *ordersv1.ShipOrderRequest) (*ordersv1.ShipOrderResponse, error) {
	r, err := s.change(ctx, req, order.ShipOrder{
		Carrier: req.GetCarrier(), TrackingNumber: req.GetTrackingNumber(),
	})
	if err != nil {
		return nil, err
	}
	return &ordersv1.ShipOrderResponse{Order: r.order(), Revision: r.revision, Position: r.position}, nil
}

// ConfirmDelivery records delivery of a shipped order.
func (s *Service) ConfirmDelivery(ctx context.Context, req *ordersv1.ConfirmDeliveryRequest) (*ordersv1.ConfirmDeliveryResponse, error) {
	r, err := s.change(ctx, req, order.ConfirmDelivery{})
	if err != nil {
		return nil, err
	}
	return &ordersv1.ConfirmDeliveryResponse{Order: r.order(), Revision: r.revision, Position: r.position}, nil
}

func (r result) order() *ordersv1.Order { return convert.OrderToProto(r.state) }

// orderRequest is a request that changes an existing order: every request
// but CreateOrder's. Each also has an optional expected_revision, which
// expectedRevision reads.
type orderRequest interface {
	request
	GetOrderId() string
}

// change runs cmd on the order req names, guarded by req's expected
// revision when it has one.
func (s *Service) change(ctx context.Context, req orderRequest, cmd order.Command) (result, error) {
	return s.execute(ctx, req, target{orderID: req.GetOrderId(), expected: expectedRevision(req)}, cmd)
}

// expectedRevisionField is the field of every orderRequest that guards a
// change by the order's revision.
const expectedRevisionField protoreflect.Name = "expected_revision"

// expectedRevision returns req's expected_revision, nil when it is not
// set. The generated getter cannot tell an unset field from 0.
func expectedRevision(req orderRequest) *uint64 {
	m := req.ProtoReflect()
	fd := m.Descriptor().Fields().ByName(expectedRevisionField)
	if fd == nil || !m.Has(fd) {
		return nil
	}
	v := m.Get(fd).Uint()
	return &v
}
