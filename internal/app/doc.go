// Package app is tether's one application layer: the operations plan,
// deploy, rollback and status, and the exit code each run ends with.
//
// The command line (internal/cli) and the Action (pkg/github) are two front
// ends over it. A front end parses its inputs into a request, renders the
// result, and returns the exit code this package maps the result to; it
// wires nothing itself. Opening a session — loading the fleet, selecting
// the nodes, loading the SSH credentials, finding the agents, and a GC-root
// directory that lives as long as the run — happens here, once, for both.
// When the two front ends each did this, they drifted apart: the same
// interrupted run exited 3 from one and 130 from the other.
//
// This package and cmd/ are the only ones besides pkg/github that read the
// process environment, and they read it through App.Getenv, so every
// operation can be driven from tests.
package app
