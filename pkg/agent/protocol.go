package agent

import (
	"path/filepath"
	"strconv"
)

// ProtocolVersion is printed by `tether-agent version`. It changes when a
// deployer of one version could misread an agent of another.
const ProtocolVersion = 2

// DefaultTempPath is where the state dir lives when the node sets no
// tempPath.
const DefaultTempPath = "/var/lib"

// BootLinks are the links of a NixOS system to what a live activation
// cannot replace: when one differs from the booted system's, the new
// system takes full effect only at the next boot. Result.RebootFor names
// them.
var BootLinks = []string{"kernel", "initrd", "kernel-modules", "systemd"}

// DefaultProfile is the NixOS system profile: what `status` and
// `generation` read when no --profile is given.
const DefaultProfile = "/nix/var/nix/profiles/system"

// StateDir returns S for a node's tempPath.
func StateDir(tempPath string) string {
	if tempPath == "" {
		tempPath = DefaultTempPath
	}
	return filepath.Join(tempPath, "tether")
}

// AgentPath is where the deployer uploads the agent whose content has the
// given sha256 (hex).
func AgentPath(stateDir, sha256hex string) string {
	return filepath.Join(stateDir, "agent-"+sha256hex)
}

// DeployDir returns D for a deploy id.
func DeployDir(stateDir, deployID string) string { return filepath.Join(stateDir, deployID) }

// The argv of each subcommand, as the deployer runs them (quoted by the
// transport). The request and the token go on standard input, never here.

// StartArgv: Request JSON on stdin; prints StartResult or an ErrorReply.
func StartArgv(agent, stateDir string) []string {
	return []string{agent, "start", "--state-dir", stateDir}
}

// FollowArgv: prints event lines from offset until `done`.
func FollowArgv(agent, dir string, offset int64) []string {
	return []string{agent, "follow", "--dir", dir, "--offset", strconv.FormatInt(offset, 10)}
}

// ConfirmArgv: token on stdin; prints {"ok":true} once the runner confirmed.
func ConfirmArgv(agent, dir string) []string {
	return []string{agent, "confirm", "--dir", dir}
}

// StatusArgv: prints a StatusReport.
func StatusArgv(agent, stateDir, profile string) []string {
	return []string{agent, "status", "--state-dir", stateDir, "--profile", profile}
}

// GenerationArgv: prints a Generation.
func GenerationArgv(agent, profile string, n int) []string {
	return []string{agent, "generation", "--profile", profile, "--number", strconv.Itoa(n)}
}

// VersionArgv: prints {"protocol":N,"version":...}.
func VersionArgv(agent string) []string { return []string{agent, "version"} }

// ImportArgv: an export stream on stdin (zstd-compressed when compressed is
// set) is added to the store; prints the imported paths.
func ImportArgv(agent string, compressed bool) []string {
	argv := []string{agent, "import"}
	if compressed {
		argv = append(argv, "--zstd")
	}
	return argv
}
