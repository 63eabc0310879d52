// Package runner is tether-agent's implementation: the subcommands that
// run on the target machine, behind the protocol of package agent (see
// docs/protocol.md).
//
// Runner.Start launches a deploy's runner detached from the SSH session;
// Runner.Run is that runner: it takes the machine's lock, records the
// previous system and the boot ID, activates a NixOS system live, waits for
// the deployer's confirmation, and only then commits it (profile, boot
// default) — or rolls back when any of it fails — writing each step to the
// deploy's event log, which is also its journal. A deploy whose runner died
// (killed, or the machine lost power) is ended from that journal by the next
// runner to take the lock (Runner.Reconcile, started by follow and status).
// Runner.Follow streams the log to the deployer, Runner.Confirm hands it
// the confirmation, Runner.Status and Runner.Generation read the machine's
// profile and last deploy, and Import feeds a closure into the store.
//
// It lives under cmd/tether-agent/internal so that only the agent can
// import it: the deployer sees the protocol, never the state machine.
// Everything that touches the machine goes through the Runner's fields
// (Executor, Clock, Spawn, Root), which the tests replace with fakes.
package runner
