package agent

import (
	"fmt"
	"strings"
)

// GOARCH maps the target's `uname -m` to the GOARCH of the agent build that
// runs there. 32-bit ARM boards (armv6l, armv7l, and armv8l: a 32-bit
// userland on a 64-bit core) all get the one "arm" build, which is compiled
// for ARMv6 so that it runs on every one of them.
func GOARCH(unameMachine string) (string, error) {
	switch strings.TrimSpace(unameMachine) {
	case "x86_64", "amd64":
		return "amd64", nil
	case "aarch64", "arm64":
		return "arm64", nil
	case "armv6l", "armv7l", "armv8l", "armv7", "armv6", "arm":
		return "arm", nil
	}
	return "", fmt.Errorf("no agent for machine type %q (have x86_64, aarch64, armv6l/armv7l)", unameMachine)
}

// AgentFileName is the name of the agent build for goarch, as
// scripts/build-agents.sh writes it.
func AgentFileName(goarch string) string { return "tether-agent-linux-" + goarch }
