// Package agent is the protocol between the deployer and tether-agent, the
// program tether runs on each machine: everything that crosses SSH between
// the two, and nothing of how the agent does its work.
//
// It holds the request a deploy starts with (Request), the events the agent
// writes while it runs and the reader that follows them across dropped
// connections (Event, EventReader), how a deploy ends (Result, Status), what
// the other subcommands print (StatusReport, Generation, StartResult), the
// error codes and exit statuses and the reply that carries them (ErrorCode,
// ErrorReply, DecodeReply), the argv of each subcommand (StartArgv,
// FollowArgv, ConfirmArgv, …) and where the agent and its state live on the
// machine (StateDir, AgentPath, DeployDir).
//
// The deployer imports this package; the agent's implementation lives under
// cmd/tether-agent, where the deployer cannot import it, so the two meet
// only here. The protocol itself — files, subcommands, events in order, the
// confirmation handshake, rollback, locking — is described in
// docs/protocol.md.
package agent
