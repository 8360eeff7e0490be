// Command canopy runs Canopy's edge and hub daemons and the organizer's
// offline tools. Everything lives in package cli; main only wires signals.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"canopy/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
