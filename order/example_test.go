package order_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/orderstream/orderstream/order"
)

// A command handler loads the state, decides, appends the events and folds
// them in. Here the "store" is a slice.
func Example() {
	var (
		s       order.State
		history []order.Event
	)
	handle := func(c order.Command) error {
		events, err := order.Decide(s, c)
		if err != nil {
			return err
		}
		for _, e := range events {
			history = append(history, e)
			s = order.Evolve(s, e, time.Date(2025, 3, 1, 12, len(history), 0, 0, time.UTC))
		}
		return nil
	}

	_ = handle(order.CreateOrder{
		OrderID: "ord-42", CustomerID: "cust-7", Currency: "EUR",
		Lines:    []order.Line{{SKU: "BOOK-1", Quantity: 2, UnitPrice: 1250}},
		Shipping: &order.Address{Line1: "Unter den Linden 1", City: "Berlin", Country: "DE"},
	})
	_ = handle(order.AddItem{SKU: "PEN-3", Quantity: 1, UnitPrice: 199})

	err := handle(order.AddItem{SKU: "PEN-3", Quantity: 5, UnitPrice: 199})
	fmt.Println("adding PEN-3 again:", errors.Is(err, order.ErrAlreadyExists))

	_ = handle(order.PlaceOrder{})
	for _, e := range history {
		fmt.Println(e.EventType())
	}
	fmt.Printf("%s, %d lines, total %d %s, version %d, placed %s\n",
		s.Status, len(s.Lines), s.Total, s.Currency, s.Version, s.PlacedAt.Format(time.Kitchen))

	err = handle(order.AddItem{SKU: "INK-9", Quantity: 1, UnitPrice: 450})
	fmt.Println("adding after placing:", errors.Is(err, order.ErrFailedPrecondition))
	// Output:
	// adding PEN-3 again: true
	// OrderCreated
	// ItemAdded
	// OrderPlaced
	// placed, 2 lines, total 2699 EUR, version 3, placed 12:03PM
	// adding after placing: true
}

func ExampleFieldError() {
	_, err := order.Decide(order.State{}, order.CreateOrder{OrderID: "ord-1", CustomerID: "cust-1", Currency: "eur"})
	var fe *order.FieldError
	if errors.As(err, &fe) {
		fmt.Println(fe.Field, "-", fe.Reason)
	}
	fmt.Println(errors.Is(err, order.ErrInvalid))
	// Output:
	// currency - must be an ISO 4217 code of 3 upper-case letters
	// true
}
