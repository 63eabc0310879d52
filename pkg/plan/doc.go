// Package plan computes what a deploy would change on each node without
// changing anything: a closure diff between the node's current system and
// the newly built one, grouped by package name and version, and (opt-in)
// the parsed output of the new system's switch-to-configuration
// dry-activate.
//
// Everything here is pure: callers gather store paths, NAR sizes and
// command output; this package only interprets them. The Plan value is the
// stable JSON contract documented in docs/plan-json.md.
package plan
