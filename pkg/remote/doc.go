// Package remote is tether's SSH transport: it dials nodes directly, through
// a chain of jump hosts or through a proxy command, checks host keys against
// pinned keys only, and runs commands built from argv on long-lived
// connections.
//
// Everything goes through golang.org/x/crypto/ssh; no ssh binary is run.
// The package never reads environment variables: the caller passes the agent
// socket, home directory and key material in.
package remote
