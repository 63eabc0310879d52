//go:build linux

// Command testhost runs sandbox hosts outside of `go test`, for the demo and
// the benchmarks:
//
//	testhost up --state FILE [--topology home|direct:N] [--latency D] [--rate BYTES_PER_S]
//	testhost relay --state FILE status|cut|restore|latency D|rate N|rates UP DOWN
//	testhost down --state FILE
//	testhost clean
//	testhost leftovers [--json]
//
// `up` stays in the foreground holding the relay, and removes everything
// when it gets SIGINT or SIGTERM (which `down` sends).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
