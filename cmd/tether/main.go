// Command tether deploys NixOS machines with magic rollback, from a terminal
// or as a CI action.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tetherdeploy/tether/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args, cli.Env(os.Environ()), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
