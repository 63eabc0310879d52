// Package github is `tether action`: tether as a GitHub Actions step. It
// reads the Actions context and the event, decides what to run, runs it
// through an Operations the command line provides, and reports on it in
// every place a GitHub user looks: the log, annotations, the job summary,
// the step outputs, the pull request and the Deployments API.
//
// It is the only package besides cmd/ that reads the environment, and it
// reads it only through ActionOptions.Getenv.
//
// # Wiring
//
// The application layer (*app.App, internal/app) implements Operations,
// the same operations the command line runs, and `tether action` calls
//
//	code := github.RunAction(ctx, github.ActionOptions{
//		Getenv: env.Get, Stdout: stdout, Stderr: stderr, Ops: app,
//	})
//
// Each request carries an app.Target built from the inputs (flake, node
// selection, key, known hosts, timeouts, parallelism) whose Progress is
// this package's: fleet-wide steps and build lines are printed at once,
// each node's steps and activation output are held and printed at the end
// as that node's log group, with its outcome. When the application layer
// knows which nodes it will touch, before changing any, it calls
// Progress.Selected(names): the nodes' deployments are then created and
// marked in progress. A run that never calls it still gets its
// deployments, created with their final status. The exit code is the
// application layer's (app.DeployExit, app.PlanExit), the one the command
// line returns for the same outcome.
//
// # What runs
//
// The command input picks the command; "auto" (the default) picks it from
// the event:
//
//   - pull_request (and pull_request_target): plan. A closed pull request
//     plans nothing. A fork's pull request under pull_request_target is
//     refused (exit 2, nothing runs): that event hands the run the
//     repository's secrets while the code is the fork's.
//   - push to the repository's default branch: deploy. A push to any other
//     branch or a tag deploys nothing, and says so.
//   - workflow_dispatch: the dispatch's own "command" input (plan, deploy,
//     rollback; deploy when it has none), with its "nodes" and
//     "generation" inputs used when the action's are empty.
//   - any other event: an error asking for an explicit command.
//
// A pull request whose head repository differs from its base repository
// (a fork) never runs anything on the nodes: its plan is requested with
// NoTargets set and DryActivate cleared, the comment says so, and
// deploy or rollback are refused.
//
// # Reporting
//
// Plan: the plan is printed, written to the job summary (up to 1 MiB) and
// to one sticky comment on the pull request. The comment starts with the
// hidden marker "<!-- tether:plan <workflow>/<job> -->", so two workflows
// or jobs keep separate comments. It is found again across all pages of
// comments and edited in place on every push; it is created anew when it
// was deleted. It stays under GitHub's 65,536-character limit (the plan is
// shortened first, longest parts first) and links the run, whose summary
// holds the full plan. The exit code is 1 when a node could not be
// planned (the change does not build, the node is unreachable, its dry
// activation failed), 0 otherwise.
//
// Deploy and rollback: one GitHub deployment per node, in the environment
// "<environment>/<node>" (environment input, default "production"), so
// each node has its own history and its own active deployment. Each is
// created with ref = the commit, auto_merge false, required_contexts []
// (never blocked by status checks), transient_environment false, task
// "deploy" or "deploy:rollback", and gets the statuses in_progress, then
// success (deployed or rolled back as asked), failure (failed, rolled
// back, unreachable) or error (uncertain, not attempted), with log_url the
// run and a description of at most 140 characters. Dry activations record
// no deployment. After a deploy from a push, the pull request merged as
// that commit (merged, merge commit = the pushed commit) gets one sticky
// comment ("<!-- tether:deploy ... -->") saying what was deployed where.
// Each node's log and outcome form a log group; every node that did not
// succeed gets an error annotation (a warning when skipped, a notice when
// a reboot is required).
//
// Outputs: "result" is a Result as JSON (command, event, reason, error,
// the plan or the report, exit code). "deployed", "rolled-back" and
// "failed" are space-separated node names: for a deploy, the nodes now on
// the new system, the nodes that failed and were rolled back, and the nodes
// that failed otherwise (failed, unreachable, uncertain, skipped); for a
// rollback, "rolled-back" lists the nodes now on the older generation and
// "failed" every other node. The outputs file is written with a random
// delimiter per value, checked not to occur in it, so text from a pull
// request (a node name, a build error) cannot end a value and set outputs
// of its own.
//
// The exit code reflects the operation alone. Comments,
// deployments and statuses are best effort: every API call has its own
// deadline (APITimeout), failures (403, 404, 5xx, rate limits, timeouts,
// a missing token) are warnings, and after two failures in a row, a 401
// or a rate limit, the API is not called again for the run.
//
// # Secrets
//
// Before anything else is printed, every line of the private key and the
// token are masked (::add-mask::), and every writer, the outputs, the
// summary and the comments replace them with *** as well. Every line of
// the log that tether did not write itself (progress, node logs, build
// logs, the plan and report texts, the event's names) is printed inside a
// ::stop-commands:: block with a fresh random token (see jobLog), so a
// node or a pull request cannot add masks, annotations or outputs.
//
// The sticky comments are edited only when the token's own identity wrote
// them (a user's ID from GET /user; the Actions bot for the run's token);
// a comment someone else wrote with the marker is left alone and a new one
// is made.
//
// # Servers
//
// GITHUB_API_URL is the API's base: https://api.github.com, GitHub
// Enterprise Server's https://host/api/v3, or a compatible forge's
// https://host/api/v1. Comments live at the same paths on all of them.
// The /api/v1 servers (an API path ending in /api/v1, or the variable their
// runners set: GITEA_ACTIONS or FORGEJO_ACTIONS) have no Deployments API:
// deployments are skipped with one notice, and the merged pull request is
// found through their commits/{sha}/pull endpoint. A 404 from the
// Deployments API on any server skips deployments the same way.
//
// # Inputs
//
// Inputs are read from INPUT_<NAME> with the name upper-cased and its
// hyphens kept (INPUT_SSH-PRIVATE-KEY), as the runner sets them for other
// actions; action.yml, a composite action, sets them in its run step's env
// (bash passes such names on; POSIX sh may not). The underscore spelling
// (INPUT_SSH_PRIVATE_KEY) is read when the first is unset, for other CIs.
// See InputNames.
package github
