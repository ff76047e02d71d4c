package natsconn

// Backoff exposes the reconnect delay to the external tests.
var Backoff = reconnectDelay
