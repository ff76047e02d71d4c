package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"testing"
)

// The usage, printed for --help and for any mistyped flag, names
// ORDERS_TOKEN and never shows its value: the token was the flag's
// default, which the usage prints, so one typo put an admin token in a
// terminal's scrollback or a CI log.
func TestUsageDoesNotShowTheToken(t *testing.T) {
	if os.Getenv("ORDERSBENCH_TEST_MAIN") == "1" {
		os.Args = []string{"ordersbench", "--rate", "abc"}
		main() // prints the usage and exits 2
		return
	}
	const token = "s3cr3t-admin-token-0123456789"
	cmd := exec.Command(os.Args[0], "-test.run=^TestUsageDoesNotShowTheToken$")
	cmd.Env = append(os.Environ(), "ORDERSBENCH_TEST_MAIN=1", "ORDERS_TOKEN="+token)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("ordersbench --rate abc: %v, want an exit status\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("$ORDERS_TOKEN")) || bytes.Contains(out, []byte(token)) {
		t.Fatalf("the usage should name $ORDERS_TOKEN and not show its value:\n%s", out)
	}
}
