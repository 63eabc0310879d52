// Package agent is the target side of a tether deploy and its wire protocol:
// the state machine that tether-agent runs on each machine (lock, set the
// profile, activate, wait for the confirmation, roll back), and the types and
// helpers the deployer uses to drive it over SSH.
//
// # Changes to the protocol in the shared contract notes
//
// The protocol below is the one agreed for the deployer, with these changes
// (each for a reason given where it is implemented):
//
//   - Statuses: besides deployed, rolled-back, failed, rollback-failed and
//     reboot-required, `done` can carry "dry-activated" (a successful
//     dry-activate) and "lock-held" (another deploy holds the machine; the
//     runner touched nothing, not even last.json).
//   - boot waits for no confirmation: it changes nothing live, so there is
//     nothing a fresh connection could prove. Only switch and test do
//     (Request.NeedsConfirmation). A deployer confirms when, and only when,
//     it sees `awaiting-confirmation`; `done` may come without one.
//   - test never changes the profile and never uses the activation wrapper
//     (wrappers that predate TEST would switch and change the boot default);
//     a wrapper-only closure fails test before anything changes. Its rollback
//     re-activates the system that was running (/run/current-system when the
//     deploy started) with `test`: the profile and boot default were left
//     alone, and `switch` would reset the boot default to that running system,
//     which may not be the profile's (after an earlier `boot` deploy).
//   - Rollback switches the profile back to the recorded previous generation
//     when that generation still holds the recorded path (no duplicate
//     generation), else `--set`s the recorded path; then deletes the failed
//     generation, but only one this deploy created (nix-env reuses the last
//     generation when it already holds the closure).
//   - A request may carry `revert {generation, path, to}`: the deployer takes
//     back a deploy it made moments ago because another node failed. The
//     profile switches back to generation `to` instead of growing a new one,
//     and once the revert has succeeded (confirmed like any deploy),
//     generation `generation` is deleted if it still holds `path`. Results
//     carry `previousGeneration` and `generationCreated` so the deployer
//     asks this only for a generation its deploy made.
//   - The token leaves request.json as soon as the runner has read it; it
//     lives only in the runner's memory.
//   - The runner releases the lock and then writes `done`: a deployer that saw
//     `done` can start the next deploy at once.
//   - `confirm` writes the confirmation only after `awaiting-confirmation`
//     (a confirm file present earlier is dropped when the wait is armed), so
//     it may be called early or again after a dropped connection; it exits 0
//     if the deploy was already confirmed, and 4 (too-late) as soon as the
//     runner starts rolling back or ends without a confirmation.
//   - A SIGTERM to the runner (the unit stopped, the machine shutting down)
//     counts as a failure: during activation it kills it and rolls back (with
//     autoRollback), while waiting it rolls back. An unconfirmed system must
//     not survive a reboot as the boot default.
//   - `follow` fails with code runner-gone (exit 5) when the runner died
//     without `done`, instead of waiting forever.
//   - Timeouts left at zero mean the schema's defaults: confirm 30s,
//     activation 240s. The activation timeout also bounds the rollback's
//     re-activation.
//   - All subcommands take --state-dir (default /tmp/tether) or --dir; `start`
//     also takes --detach auto|systemd|setsid. `version` prints
//     {"protocol":1,...}.
//   - The state dir must be a real directory, not writable by group or others,
//     owned by the agent's user or by the user who ran it through sudo;
//     otherwise every command refuses it (code unsafe-state-dir).
//
// # Protocol
//
// S is the state dir, <tempPath>/tether (StateDir). The deployer uploads the
// agent to S/agent-<sha256> (AgentPath) for the machine's GOARCH(uname -m).
// A deploy lives in D = S/<deploy-id> (deploy ids: [a-z0-9-], used once):
// request.json, events.jsonl, agent.log (setsid mode), and confirm while a
// confirmation is being handed over. S/lock is flock'ed by the running deploy
// and S/lock.json names it; S/last.json is the last deploy's Result.
//
// Every subcommand prints JSON on stdout; on failure an ErrorReply
// {"error","code"[,"holder"][,"status"]} and a non-zero exit status (ExitCode:
// 2 usage, 3 lock held, 4 confirmation rejected or too late, 5 runner gone, 1
// anything else). DecodeReply turns a reply back into a typed error.
//
//	start --state-dir S [--detach M]   Request JSON on stdin → StartResult, once the runner holds the lock
//	run --dir D                        the detached state machine (Runner.Run)
//	follow --dir D --offset N          event lines from byte N until `done` (EventReader tracks N)
//	confirm --dir D                    token on stdin → {"ok":true} once `confirmed`
//	status [--state-dir S] [--profile P]  StatusReport
//	generation [--profile P] --number N   Generation
//	version
//
// `start` detaches the runner from the SSH session: `systemd-run
// --unit=tether-<id> --collect --service-type=exec` when /run/systemd/system
// exists, else setsid plus a double fork with output to D/agent.log. It then
// waits up to 10s for the first event: `locked` (success) or `lock-held`.
//
// The runner writes these events (Event; one JSON object per line, with seq
// and time): locked, previous {path, generation, running}, profile-set
// {generation, path}, activating {argv}, log {stream, line}, activated
// {exitCode, unitsFailed, rebootRequired} or activation-failed {exitCode,
// reason}, awaiting-confirmation {deadline}, confirm-rejected {reason},
// confirmed, rolling-back {reason, to}, rolled-back {to, generation,
// exitCode} or rollback-failed {error}, warning {error}, and always last
// done {status, reason, error, result}.
//
// Activation: closure/deploy-rs-activate when present, run as
// <profile>/deploy-rs-activate with PROFILE=<profile> (the closure for
// dry-activate), DRY_ACTIVATE, BOOT and TEST set to "0" or "1", in that
// directory; otherwise closure/bin/switch-to-configuration <action>. Exit 0
// is success, 4 is "units failed" (a failure unless allowFailedUnits), 100
// is "reboot required" (success, reported as reboot-required); anything
// else, or the activation timeout (which kills its process group), is a
// failure, rolled back when autoRollback.
package agent
