package order

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ValidateID returns nil when v is a valid identifier (see the package
// comment: 1 to MaxIDLen bytes, each a printable ASCII character other than
// space, and neither "." nor ".."), and otherwise a *FieldError for field, which matches ErrInvalid.
// Identifiers the domain does not hold itself, such as request ids, use it
// so that every identifier in the system follows one rule.
func ValidateID(field, v string) error { return validateID(field, v) }

// validateID checks an identifier: 1..MaxIDLen bytes in 0x21-0x7E. ASCII
// only, because ids are compared byte-wise and used as keys, where
// look-alike Unicode or invisible characters (C1 controls, zero-width and
// other format characters) would make two ids that print the same differ.
func validateID(field, v string) error {
	if r := idProblem(v); r != "" {
		return invalid(field, r)
	}
	return nil
}

// The *Problem functions say why a value is invalid, "" when it is not,
// so that a caller that names the field by its place (lines[3].sku,
// shipping_address.city) builds the name only for an error: a valid
// request allocates nothing for its fields' names.

func idProblem(v string) string {
	if v == "" {
		return "is required"
	}
	if len(v) > MaxIDLen {
		return "must be at most " + strconv.Itoa(MaxIDLen) + " characters"
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x21 || c > 0x7e {
			return "must contain only printable ASCII characters without spaces"
		}
	}
	if v == "." || v == ".." {
		// A URL path's dot segments: a REST route naming the id (an
		// item's SKU, a customer's summary) would never be reached.
		return `must not be "." or ".."`
	}
	return ""
}

// TextRuneAllowed reports whether free text may hold r (see the package
// comment): anything but control characters (Cc), format characters (Cf)
// other than the zero-width non-joiner and joiner, and line and paragraph
// separators (Zl, Zp). Producers of text for the domain, such as a payment
// provider's decline reason, use it to make their text acceptable.
func TextRuneAllowed(r rune) bool {
	switch {
	case r == zeroWidthNonJoiner || r == zeroWidthJoiner:
		// Needed to spell words in Persian and Indic scripts, and in
		// emoji sequences; they change how letters join, not the order
		// or lines a reader sees.
		return true
	case unicode.IsControl(r), unicode.Is(unicode.Cf, r), unicode.Is(unicode.Zl, r), unicode.Is(unicode.Zp, r):
		return false
	}
	return true
}

// TextAllowed reports whether every character of s is one free text may
// hold (TextRuneAllowed): what else is recorded beside the text, such as
// an event's actor, is held to the same rule.
func TextAllowed(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return !TextRuneAllowed(r) })
}

const (
	zeroWidthNonJoiner = '\u200c'
	zeroWidthJoiner    = '\u200d'
)

// validateText checks free text: valid UTF-8, at most MaxTextLen code
// points, only characters TextRuneAllowed accepts (control characters
// break logs, CSV exports and labels; bidi overrides, invisible format
// characters and line separators make what an operator reads in a
// console, the CLI or a log differ from what is stored), and, when
// required, something other than spaces.
func validateText(field, v string, required bool) error {
	if r := textProblem(v, required); r != "" {
		return invalid(field, r)
	}
	return nil
}

func textProblem(v string, required bool) string {
	if !utf8.ValidString(v) {
		return "must be valid UTF-8"
	}
	if utf8.RuneCountInString(v) > MaxTextLen {
		return "must be at most " + strconv.Itoa(MaxTextLen) + " characters"
	}
	if !TextAllowed(v) {
		return "must not contain control, format (bidi, zero-width) or line separator characters"
	}
	if required && !strings.ContainsFunc(v, visible) {
		return "is required"
	}
	return ""
}

// visible reports a character that shows on its own: a letter, digit,
// punctuation or symbol. Required text needs one: spaces, the zero-width
// joiners and combining marks alone would store a field that reads as
// empty.
func visible(r rune) bool {
	switch r {
	case '\u115f', '\u1160', '\u3164', '\uffa0', '\u2800':
		// Hangul fillers and the blank Braille pattern: a letter or a
		// symbol by category, blank on screen.
		return false
	}
	return unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.IsPunct(r) || unicode.IsSymbol(r)
}

// upperLetters reports whether v is exactly n letters A-Z.
func upperLetters(v string, n int) bool {
	if len(v) != n {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 'A' || v[i] > 'Z' {
			return false
		}
	}
	return true
}

func validateCurrency(field, v string) error {
	if v == "" {
		return invalid(field, "is required")
	}
	if !upperLetters(v, 3) {
		return invalid(field, "must be an ISO 4217 code of 3 upper-case letters")
	}
	return nil
}

// lineField names field of the i-th line of a CreateOrder.
func lineField(i int, field string) string { return "lines[" + strconv.Itoa(i) + "]." + field }

// lineProblem returns the field of l that is invalid ("sku", "quantity"
// or "unit_price") and why, or "", "" when l is valid. The field is
// top-level for AddItem and under "lines[i]." inside CreateOrder.
func lineProblem(l Line) (field, reason string) {
	if r := idProblem(l.SKU); r != "" {
		return "sku", r
	}
	if r := quantityProblem(l.Quantity); r != "" {
		return "quantity", r
	}
	if l.UnitPrice < 0 || l.UnitPrice > MaxUnitPrice {
		return "unit_price", "must be between 0 and " + strconv.FormatInt(MaxUnitPrice, 10)
	}
	return "", ""
}

func quantityProblem(q int64) string {
	if q < 1 || q > MaxQuantity {
		return "must be between 1 and " + strconv.Itoa(MaxQuantity)
	}
	return ""
}

func validateAddress(prefix string, a Address) error {
	fields := [...]struct {
		name     string
		value    string
		required bool
	}{
		{"name", a.Name, false},
		{"line1", a.Line1, true},
		{"line2", a.Line2, false},
		{"city", a.City, true},
		{"region", a.Region, false},
		{"postal_code", a.PostalCode, false},
	}
	for _, f := range fields {
		if r := textProblem(f.value, f.required); r != "" {
			return invalid(prefix+f.name, r)
		}
	}
	if a.Country == "" {
		return invalid(prefix+"country", "is required")
	}
	if !upperLetters(a.Country, 2) {
		return invalid(prefix+"country", "must be an ISO 3166-1 alpha-2 code of 2 upper-case letters")
	}
	// Erased is a fact of history read back (an erasure), never a
	// command's: an address marked erased with its content would read as
	// holding no personal data, and erasure would pass it by.
	if a.Erased {
		return invalid(prefix+"erased", "is set only on history read back")
	}
	return nil
}

// lineTotal returns q*p, and false if it overflows int64. Lines within the
// limits never overflow; the check keeps money from silently wrapping if a
// limit is ever raised.
func lineTotal(q, p int64) (int64, bool) {
	if q == 0 || p == 0 {
		return 0, true
	}
	t := q * p
	if t/p != q || (q == -1 && p == minInt64) || (p == -1 && q == minInt64) {
		return 0, false
	}
	return t, true
}

const minInt64 = -1 << 63

func addMoney(a, b int64) (int64, bool) {
	s := a + b
	// Overflow happened iff both operands have the same sign and the sum's
	// sign differs.
	if (a >= 0) == (b >= 0) && (s >= 0) != (a >= 0) {
		return 0, false
	}
	return s, true
}

// total sums the lines with overflow checks.
func total(lines []Line) (int64, bool) {
	var sum int64
	for _, l := range lines {
		t, ok := lineTotal(l.Quantity, l.UnitPrice)
		if !ok {
			return 0, false
		}
		if sum, ok = addMoney(sum, t); !ok {
			return 0, false
		}
	}
	return sum, true
}

// sumLines is the total for Evolve, which must not fail: on overflow, which
// Decide rules out, it wraps like plain int64 arithmetic.
func sumLines(lines []Line) int64 {
	var sum int64
	for _, l := range lines {
		sum += l.Quantity * l.UnitPrice
	}
	return sum
}
