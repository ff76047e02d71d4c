package console

import (
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// userError turns a service's error into an HTTP status and a message fit
// for the user. Only the messages of INVALID_ARGUMENT (it names the bad
// field) and OUT_OF_RANGE (it says what the range is), which the services
// write for clients, are passed on; any other status gets a fixed text, and
// unexpected ones are logged here.
func (c *Console) userError(err error) (int, string) {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.Unauthenticated:
		return http.StatusUnauthorized, "Your token was refused: sign in again."
	case codes.PermissionDenied:
		return http.StatusForbidden, "Your roles do not allow this."
	case codes.NotFound:
		return http.StatusNotFound, "Not found."
	case codes.InvalidArgument:
		return http.StatusBadRequest, "Not accepted: " + st.Message()
	case codes.OutOfRange:
		return http.StatusBadRequest, "Out of range: " + st.Message()
	case codes.Aborted:
		return http.StatusConflict, "This changed meanwhile: review the current state and try again."
	case codes.FailedPrecondition:
		return http.StatusConflict, "The current state does not allow this."
	case codes.AlreadyExists:
		return http.StatusConflict, "That already exists."
	case codes.Unavailable, codes.DeadlineExceeded:
		return http.StatusServiceUnavailable, "The service is unavailable right now: try again shortly."
	case codes.ResourceExhausted:
		return http.StatusServiceUnavailable, "The service is busy: try again shortly."
	case codes.Canceled:
		return 499, "Cancelled."
	case codes.Unimplemented:
		return http.StatusNotImplemented, "The service that answers this does not run where this console points."
	}
	c.log.Error("console: call failed", "code", st.Code().String(), "err", err)
	return http.StatusInternalServerError, "Something went wrong; the error was logged."
}

// fail answers a failed call: a refused token sends the user to sign in,
// anything else is an error page (or, for the script, the status alone). A
// console without authentication has no sign-in to send anyone to (its
// sign-in page sends the browser back, for ever): the services it calls
// ask for a token it cannot have, which only its configuration can mend.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	code, msg := c.userError(err)
	if code == http.StatusUnauthorized && c.auth == nil {
		c.log.Error("console: the services require a token and this console has no authentication to sign anyone in: give it the services' AUTH_* settings", "err", err)
		c.errorPage(w, r, s, http.StatusBadGateway, "The services require a token, and this console is not set up to sign anyone in: ask the operator to configure its authentication.")
		return
	}
	if code == http.StatusUnauthorized {
		c.setCookie(w, "")
		c.toLogin(w, r, "expired")
		return
	}
	c.errorPage(w, r, s, code, msg)
}

// errorPage shows msg with code; script requests get the text only.
func (c *Console) errorPage(w http.ResponseWriter, r *http.Request, s *session, code int, msg string) {
	if r.Header.Get("X-Console") != "" {
		http.Error(w, msg, code)
		return
	}
	v := &view{Title: "Error", Flash: flashError(msg)}
	if s != nil {
		v = s.view("Error", "", nil)
		v.Flash = flashError(msg)
	}
	c.render(w, code, "error", v)
}
