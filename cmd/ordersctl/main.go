// Command ordersctl is the command-line client of orderstream. Run
// `ordersctl --help` for its commands; see package internal/cli.
package main

import (
	"os"

	"github.com/orderstream/orderstream/internal/cli"
)

func main() { os.Exit(cli.Main()) }
