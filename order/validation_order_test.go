package order_test

import (
	"errors"
	"testing"

	"github.com/orderstream/orderstream/order"
)

// The package comment: Address.Erased is set "only [by] history read back
// ... commands never do", and an erased address has every other field
// empty. Decide refuses a command's address flagged as erased; it recorded
// it, and the order read as erased with its address in full.
func TestCommandAddressFlaggedErasedIsRefused(t *testing.T) {
	erased := homeAddress()
	erased.Erased = true

	draft := stateIn(t, order.StatusDraft)
	evs, err := order.Decide(draft, order.SetShippingAddress{Address: erased})
	if !errors.Is(err, order.ErrInvalid) {
		s := draft
		for _, e := range evs {
			s = order.Evolve(s, e, t0)
		}
		t.Errorf("SetShippingAddress with Erased=true and content: events %+v, err %v; want ErrInvalid "+
			"(state now has PersonalDataErased()=%v while Shipping=%+v)", evs, err, s.PersonalDataErased(), *s.Shipping)
	}

	c := newOrder()
	c.Shipping = &erased
	if evs, err := order.Decide(order.State{}, c); !errors.Is(err, order.ErrInvalid) {
		t.Errorf("CreateOrder with an erased shipping address: events %+v, err %v; want ErrInvalid", evs, err)
	}
}

// "(1) the command's own fields (ErrInvalid, first bad field in declaration
// order)": in a line, sku comes before quantity, so a line whose sku repeats
// an earlier line's and whose quantity is also bad is reported at its sku,
// not (as it was) at its quantity.
func TestCreateDuplicateSKUIsTheFirstBadField(t *testing.T) {
	c := newOrder()
	c.Lines[1].SKU = c.Lines[0].SKU
	c.Lines[1].Quantity = 0
	_, err := order.Decide(order.State{}, c)
	var fe *order.FieldError
	if !errors.As(err, &fe) || fe.Field != "lines[1].sku" {
		t.Errorf("err = %v; want a FieldError for lines[1].sku (the first bad field)", err)
	}
}
