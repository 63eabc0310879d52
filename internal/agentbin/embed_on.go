//go:build tether_embed

package agentbin

import (
	"embed"
	"io/fs"
)

// agents are put in place by scripts/release.sh (through -overlay, so the
// working tree is never written). Naming each file makes a release build
// without one of them fail to compile instead of failing a deploy.
//
//go:embed agents/tether-agent-linux-amd64 agents/tether-agent-linux-arm64 agents/tether-agent-linux-arm
var agents embed.FS

// embeddedAgents returns the agents this release build carries.
func embeddedAgents() fs.FS {
	sub, err := fs.Sub(agents, "agents")
	if err != nil {
		panic(err) // a constant path in an embedded FS
	}
	return sub
}
