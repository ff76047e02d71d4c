// Package order is the Order aggregate of orderstream as pure functions.
//
// [Decide] turns a [Command] and the current [State] into the events that
// record its effect, or into a domain error; [Evolve] applies one event to a
// state; [Fold] replays a whole history. Nothing here does I/O, reads the
// clock or imports transport, storage or telemetry packages: the caller loads
// the history, folds it, decides, appends the events and supplies each
// event's occurrence time from the event metadata. Because all validation
// happens in Decide, before any event exists, Evolve never fails and never
// rejects a stored fact: history written by an older, laxer version of the
// rules still replays.
//
// # Lifecycle
//
//	from                             command                      to
//	(none)                           CreateOrder                  draft
//	draft                            AddItem, RemoveItem,         draft
//	                                 ChangeItemQuantity,
//	                                 SetShippingAddress
//	draft                            PlaceOrder                   placed
//	placed                           SetShippingAddress           placed
//	placed, payment_declined         RecordPayment (authorized)   paid
//	placed, payment_declined         RecordPayment (declined)     payment_declined
//	draft, placed, payment_declined, CancelOrder                  cancelled (final)
//	paid
//	cancelled (after payment)        RecordRefund                 cancelled, refunded
//	paid                             ShipOrder                    shipped
//	shipped                          ConfirmDelivery              delivered (final)
//
// # Errors
//
// Every error returned by Decide matches exactly one of these sentinels with
// [errors.Is]; the service edge maps them to gRPC codes:
//
//   - [ErrInvalid] (INVALID_ARGUMENT): a malformed command. Field problems are
//     a *[FieldError] naming the field in proto-style snake_case
//     ("customer_id", "lines[2].quantity", "shipping_address.country").
//   - [ErrNotFound] (NOT_FOUND): the order does not exist, or the SKU named by
//     RemoveItem or ChangeItemQuantity is not in the order.
//   - [ErrAlreadyExists] (ALREADY_EXISTS): CreateOrder for an existing order,
//     or AddItem for a SKU already in the order.
//   - [ErrFailedPrecondition] (FAILED_PRECONDITION): the order's status (or
//     contents) does not allow the command. The message names the status.
//
// Decide checks in this order, so a command gets the same answer whatever
// the state when its arguments are malformed: (1) the command's own fields
// (ErrInvalid, first bad field in declaration order); (2) whether the order
// exists (ErrNotFound, or ErrAlreadyExists for CreateOrder); (3) whether the
// status allows the command (ErrFailedPrecondition); (4) checks against the
// order's contents (SKU present or absent, line limit, payment amount and
// currency, prerequisites for placing), and last whether the order's
// history has room for a repeatable change ([MaxChanges]).
//
// A command that would change nothing returns no events and a nil error:
// ChangeItemQuantity to the line's current quantity, and SetShippingAddress
// with the address already set. Callers must accept an empty event slice.
//
// # Field rules
//
// Identifiers (order_id, customer_id, sku, payment_ref) are 1 to [MaxIDLen]
// bytes of printable ASCII without spaces: every byte is in 0x21-0x7E. That
// excludes spaces, control characters and non-ASCII text, so ids compare
// byte-for-byte and are safe in logs and keys. An id is neither "." nor
// "..", which URL paths take for directories: a REST route naming it
// would never be reached. The domain allows '.', '*' and
// '>' in order ids; the JetStream event store names a subject after each
// order and refuses them, so the API answers such an order id with
// INVALID_ARGUMENT.
//
// Currencies are ISO 4217 alphabetic codes: exactly three upper-case letters
// A-Z. Only the form is checked, not membership in the ISO list. Every amount
// of an order is in minor units of its currency, as int64.
//
// Free text (address fields, reasons, carrier, tracking number) is valid
// UTF-8 of at most [MaxTextLen] characters (Unicode code points) and contains
// no control characters (Unicode category Cc: C0 controls including tab and
// newline, DEL, C1 controls), no format characters (Cf: bidi overrides and
// isolates such as U+202E, zero-width space, word joiner, BOM, soft hyphen)
// and no line or paragraph separators (Zl U+2028, Zp U+2029): they would make
// what an operator reads in a console, the CLI or a log differ from what is
// stored, reorder or hide part of it, or forge a new line. The zero-width
// non-joiner and joiner (U+200C, U+200D) are allowed, since Persian and
// Indic scripts and emoji need them to spell words ([TextRuneAllowed]).
// Text is refused rather than stored escaped: every reader of the log would
// otherwise have to escape it. Required text must contain a visible
// character, a letter, digit, punctuation or symbol: spaces, zero-width
// joiners or combining marks alone read as empty.
//
// Addresses: line1 and city are required free text; name, line2, region and
// postal_code are optional free text; country is required and is an ISO
// 3166-1 alpha-2 code in its form: exactly two upper-case letters A-Z.
//
// Lines: sku is an identifier, quantity is 1 to [MaxQuantity], unit_price is
// 0 (free items) to [MaxUnitPrice] minor units. A SKU appears at most once in
// an order, and an order has at most [MaxLines] lines. The total is the sum
// of quantity × unit_price over the lines, computed with overflow checks;
// with the limits above it is at most 10^18 and cannot overflow int64, but a
// total that would overflow is rejected with ErrInvalid rather than wrapped.
//
// History: an order whose history holds [MaxChanges] events refuses the
// commands that can repeat without moving it on (AddItem, RemoveItem,
// ChangeItemQuantity, SetShippingAddress, and RecordPayment declined for
// an order whose payment was declined already) with ErrFailedPrecondition;
// one of them that would change nothing (the current quantity, say) is
// still answered with no event, as at any length, not refused. The other commands, the
// first decline of a placed order included, record at most one event each
// in an order's life, so they are never refused for it, and a history
// holds at most MaxChanges + 6 events: loading an order stays bounded
// whatever a client does to it.
//
// # Commands
//
//   - CreateOrder: only when the order does not exist (else ErrAlreadyExists).
//     order_id, customer_id and currency are required; the order id
//     "_customers" ([CustomersSubjectID]) is reserved (ErrInvalid). Initial lines are
//     optional, each validated, at most MaxLines, and a SKU may not repeat
//     within the command (ErrInvalid on the repeat). The shipping address is
//     optional and validated when present. Emits OrderCreated.
//   - AddItem: draft only. The SKU must not be in the order yet
//     (ErrAlreadyExists; change the quantity instead). An order that already
//     has MaxLines lines rejects it with ErrFailedPrecondition. Emits ItemAdded.
//   - RemoveItem: draft only; the SKU must be in the order (else ErrNotFound).
//     Removing the last line is allowed; PlaceOrder then refuses. Emits
//     ItemRemoved.
//   - ChangeItemQuantity: draft only; the SKU must be in the order (else
//     ErrNotFound); quantity 1 to MaxQuantity (use RemoveItem to drop a line).
//     The current quantity is a no-op. Emits ItemQuantityChanged.
//   - SetShippingAddress: draft or placed, that is until a payment attempt
//     was recorded, because a payment authorizes delivery to a known address.
//     The current address is a no-op. Emits ShippingAddressSet.
//   - PlaceOrder: draft only; the order needs at least one line and a shipping
//     address (else ErrFailedPrecondition). Tax, given by the caller because
//     orderstream computes none, is 0 to MaxTax minor units (else ErrInvalid)
//     and is charged on top of the lines. Emits OrderPlaced with the
//     subtotal (the lines), the tax and the total to charge (their sum).
//   - RecordPayment: placed or payment_declined (a declined payment may be
//     retried with another authorization). Authorized: payment_ref is a
//     required identifier, amount must equal the order total with tax
//     (GrandTotal) and currency,
//     when not empty, must equal the order currency (else ErrInvalid); reason
//     is ignored. Emits PaymentAuthorized and the order becomes paid.
//     Declined: payment_ref is optional (an identifier when present), reason
//     is optional free text, amount and currency are ignored. Emits
//     PaymentDeclined and the order becomes payment_declined. Either way
//     a field the outcome ignores must still be well formed (amount not
//     negative, currency a code and reason free text when present), or
//     ErrInvalid.
//   - CancelOrder: draft, placed, payment_declined or paid; reason is optional
//     free text. Cancelling a paid order leaves a refund due (RefundDue);
//     the payments process manager refunds it and records RecordRefund.
//     Shipped, delivered and cancelled orders cannot be cancelled
//     (ErrFailedPrecondition). Emits OrderCancelled.
//   - RecordRefund: only a cancelled order that was paid and not yet
//     refunded (ErrFailedPrecondition otherwise); refund_ref is a required
//     identifier and amount must equal the paid amount (ErrInvalid). Emits
//     RefundIssued; the status stays cancelled.
//   - ShipOrder: paid only; carrier and tracking_number are optional free text,
//     because not every hand-over has a tracked carrier. Emits OrderShipped.
//   - ConfirmDelivery: shipped only. Emits OrderDelivered.
//
// Every command but CreateOrder on an order that does not exist returns
// ErrNotFound. Repeating a command that already took effect (paying a paid
// order, cancelling a cancelled one) is a transition error, not a no-op:
// idempotent retries are recognised by request id before Decide is called.
//
// # Personal data
//
// The shipping address and the tracking number are personal data. Storage
// seals them with the customer's data key; forgetting the customer
// ([CustomerForgotten]) destroys the key, and history read back afterwards
// carries them as erased ([Address].Erased, [OrderShipped].TrackingNumberErased):
// the fact that an address or tracking number was given stays, its content
// is gone. Evolve folds erased values like any other; Decide treats an
// erased address as an address (an order whose address was erased can
// still be placed). Customer ids are pseudonymous and stay.
//
// # Values
//
// State, commands and events are values. Decide never modifies its inputs and
// the events it returns share no memory with the command. Evolve returns a
// state that shares no Lines or Shipping memory with its input, so states
// kept from earlier in a history stay valid. Commands and events may also be
// passed as non-nil pointers; Decide always returns events as values.
package order
