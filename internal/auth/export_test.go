package auth

import "time"

// SetNow sets the clock a reads (token times, the JWKS file's looks).
func SetNow(a *Authenticator, now func() time.Time) { a.now = now }
