package client

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Exit codes of ordersctl and of ordersd's subcommands that call ordersd.
const (
	ExitOK          = 0
	ExitUsage       = 1
	ExitNotFound    = 2
	ExitConflict    = 3
	ExitUnavailable = 4
	ExitOther       = 5
	ExitBrokenChain = 6
)

// ExitCode is the exit code for a call that failed with err (ExitOK for
// nil): by its gRPC code, and ExitUnavailable for a deadline that passed
// before an answer. An error that is neither exits ExitOther.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, context.DeadlineExceeded):
		return ExitUnavailable
	}
	st, ok := status.FromError(err)
	if !ok {
		return ExitOther
	}
	switch st.Code() {
	case codes.InvalidArgument, codes.OutOfRange:
		return ExitUsage
	case codes.NotFound:
		return ExitNotFound
	case codes.AlreadyExists, codes.Aborted, codes.FailedPrecondition:
		return ExitConflict
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		return ExitUnavailable
	default:
		return ExitOther
	}
}

// Message is the one line a person reads for err: for a status error its
// code in words and the server's message, without the "rpc error: code =
// ..." wrapping.
func Message(err error) string {
	if st, ok := status.FromError(err); ok {
		return codeWords(st.Code()) + ": " + st.Message()
	}
	return err.Error()
}

// codeWords spells a gRPC code for people: "FailedPrecondition" becomes
// "failed precondition".
func codeWords(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return strings.ToLower(b.String())
}
