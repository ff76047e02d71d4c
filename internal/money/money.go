// Package money formats and parses amounts of money given in minor units
// (cents) of an ISO 4217 currency, with the currency's own number of
// decimals, for the command-line client and the console.
package money

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// minorDigits is the ISO 4217 exponent of the currencies that differ from
// the usual two decimals.
var minorDigits = map[string]int{
	"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
	"RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
	"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
	"CLF": 4, "UYW": 4,
}

// Digits is the number of decimals of currency's minor unit: 2 unless
// ISO 4217 says otherwise.
func Digits(currency string) int {
	if d, ok := minorDigits[strings.ToUpper(currency)]; ok {
		return d
	}
	return 2
}

// Format renders minor units in the major unit with the currency's
// decimals: Format(3097, "EUR") = "30.97 EUR".
func Format(minor int64, currency string) string {
	if currency == "" {
		return Amount(minor, currency)
	}
	return Amount(minor, currency) + " " + currency
}

// Amount is Format without the currency: Amount(3097, "EUR") = "30.97".
func Amount(minor int64, currency string) string {
	d := Digits(currency)
	neg := minor < 0
	u := uint64(minor)
	if neg {
		u = uint64(-minor)
	}
	s := strconv.FormatUint(u, 10)
	if d > 0 {
		for len(s) <= d {
			s = "0" + s
		}
		s = s[:len(s)-d] + "." + s[len(s)-d:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// ErrTooLarge reports an amount whose minor units an int64 cannot hold
// (Parse).
var ErrTooLarge = errors.New("too large")

// Parse turns a major-unit amount ("12.5", "1200") into minor units. It
// returns an error for a negative or malformed amount, or one with more
// decimals than the currency has.
func Parse(s, currency string) (int64, error) {
	d := Digits(currency)
	whole, frac, hasFrac := strings.Cut(strings.TrimSpace(s), ".")
	if whole == "" || strings.HasPrefix(whole, "-") || strings.HasPrefix(whole, "+") {
		return 0, fmt.Errorf("amount %q: want a non-negative number like 12.50", s)
	}
	if hasFrac && len(frac) > d {
		return 0, fmt.Errorf("amount %q: %s has %d decimals", s, currency, d)
	}
	for len(frac) < d {
		frac += "0"
	}
	digits := whole + frac
	n, err := strconv.ParseUint(digits, 10, 63)
	// ParseUint reports the range before a character past it that is
	// not a digit: only a number is too large.
	if errors.Is(err, strconv.ErrRange) && strings.Trim(digits, "0123456789") == "" {
		return 0, fmt.Errorf("amount %q: %w: at most %s", s, ErrTooLarge, Format(math.MaxInt64, currency))
	}
	if err != nil || n > math.MaxInt64 {
		return 0, fmt.Errorf("amount %q: want a non-negative number like 12.50", s)
	}
	return int64(n), nil
}

// AddSaturating returns a + b held to int64's range: the largest or
// smallest amount where the sum would overflow. For aggregates of amounts
// each within range (a customer's lifetime spend) that can pass it.
func AddSaturating(a, b int64) int64 {
	switch s := a + b; {
	case b > 0 && s < a:
		return math.MaxInt64
	case b < 0 && s > a:
		return math.MinInt64
	default:
		return s
	}
}
