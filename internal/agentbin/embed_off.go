//go:build !tether_embed

package agentbin

import "io/fs"

// embeddedAgents is nil: only release builds (scripts/release.sh, build
// tag tether_embed) carry the agents inside.
func embeddedAgents() fs.FS { return nil }
