package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/orderstream/orderstream/internal/money"
)

// moneyFields are the JSON names of the contract's amounts of money, all
// int64 minor units: Order.total and paid_amount, LineItem.unit_price and
// line_total, the events' unit_price, total and amount, and Money.amount.
// TestMoneyFieldsAreTheContractsAmounts keeps this list and the protos in
// step.
var moneyFields = map[string]bool{"total": true, "subtotal": true, "tax": true, "grandTotal": true, "paidAmount": true, "unitPrice": true, "lineTotal": true, "amount": true}

// withMoney rewrites proto3 JSON (protojson's output) for -o json: every
// amount of money becomes an object
//
//	{"minor": 2500, "currency": "EUR", "decimal": "25.00"}
//
// the integer in minor units, its currency, and the amount in the major
// unit as the tables show it. The currency is the one of the enclosing
// object, or of the order the object names by orderId (an order's events
// carry it only in OrderCreated); "decimal" is left out when the currency is
// not known. Field order is kept, and the output is one line.
func withMoney(protoJSON []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(protoJSON))
	dec.UseNumber()
	v, err := decodeOrdered(dec)
	if err != nil {
		return nil, err
	}
	currencies := map[string]string{}
	learnCurrencies(v, currencies)
	if err := rewriteMoney(v, "", currencies); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := encodeOrdered(&buf, v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// object is a JSON object that keeps its keys' order.
type object struct {
	keys []string
	vals map[string]any
}

func (o *object) set(k string, v any) {
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.vals[k] = v
}

func decodeOrdered(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			o := &object{vals: map[string]any{}}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				v, err := decodeOrdered(dec)
				if err != nil {
					return nil, err
				}
				o.set(k, v)
			}
			_, err := dec.Token() // '}'
			return o, err
		case '[':
			a := []any{}
			for dec.More() {
				v, err := decodeOrdered(dec)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			_, err := dec.Token() // ']'
			return a, err
		}
		return nil, fmt.Errorf("unexpected %v", t)
	default:
		return tok, nil
	}
}

func encodeOrdered(w *bytes.Buffer, v any) error {
	switch x := v.(type) {
	case *object:
		w.WriteByte('{')
		for i, k := range x.keys {
			if i > 0 {
				w.WriteByte(',')
			}
			if err := encodeOrdered(w, k); err != nil {
				return err
			}
			w.WriteByte(':')
			if err := encodeOrdered(w, x.vals[k]); err != nil {
				return err
			}
		}
		w.WriteByte('}')
	case []any:
		w.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				w.WriteByte(',')
			}
			if err := encodeOrdered(w, e); err != nil {
				return err
			}
		}
		w.WriteByte(']')
	default:
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(x); err != nil {
			return err
		}
		w.Truncate(w.Len() - 1) // Encode's newline
	}
	return nil
}

// learnCurrencies records, for every object naming an order by orderId,
// the first currency found inside it: an Order's own, or an OrderCreated
// event's.
func learnCurrencies(v any, into map[string]string) {
	switch x := v.(type) {
	case *object:
		if id, ok := x.vals["orderId"].(string); ok && into[id] == "" {
			if c := findCurrency(x); c != "" {
				into[id] = c
			}
		}
		for _, k := range x.keys {
			learnCurrencies(x.vals[k], into)
		}
	case []any:
		for _, e := range x {
			learnCurrencies(e, into)
		}
	}
}

func findCurrency(v any) string {
	switch x := v.(type) {
	case *object:
		if c, ok := x.vals["currency"].(string); ok && c != "" {
			return c
		}
		for _, k := range x.keys {
			if c := findCurrency(x.vals[k]); c != "" {
				return c
			}
		}
	case []any:
		for _, e := range x {
			if c := findCurrency(e); c != "" {
				return c
			}
		}
	}
	return ""
}

func rewriteMoney(v any, currency string, currencies map[string]string) error {
	switch x := v.(type) {
	case *object:
		if id, ok := x.vals["orderId"].(string); ok && currencies[id] != "" {
			currency = currencies[id]
		}
		if c, ok := x.vals["currency"].(string); ok && c != "" {
			currency = c
		}
		for _, k := range x.keys {
			if s, ok := x.vals[k].(string); ok && moneyFields[k] {
				minor, err := strconv.ParseInt(s, 10, 64)
				if err != nil {
					return fmt.Errorf("%s: %q is not an amount in minor units", k, s)
				}
				x.vals[k] = moneyObject(minor, currency)
				continue
			}
			if err := rewriteMoney(x.vals[k], currency, currencies); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range x {
			if err := rewriteMoney(e, currency, currencies); err != nil {
				return err
			}
		}
	}
	return nil
}

// moneyObject is one amount as -o json prints it: minor units, currency and,
// with a currency, the decimal amount.
func moneyObject(minor int64, currency string) *object {
	m := &object{vals: map[string]any{}}
	m.set("minor", json.Number(strconv.FormatInt(minor, 10)))
	m.set("currency", currency)
	if currency != "" {
		m.set("decimal", money.Amount(minor, currency))
	}
	return m
}
