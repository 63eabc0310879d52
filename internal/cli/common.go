package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	ucli "github.com/urfave/cli/v2"

	"github.com/tetherdeploy/tether/internal/app"
)

// nodesCommand defines a command that works on a selection of nodes
// (names, @tags, globs; all nodes when none is given, unless required):
// the target flags every such command shares come first, then its own.
// run does the work, apart from the definition.
func nodesCommand(name, usage string, required bool, run ucli.ActionFunc, flags ...ucli.Flag) *ucli.Command {
	args := "NODE|@TAG|GLOB ..."
	if !required {
		args = "[" + args + "]"
	}
	return &ucli.Command{Name: name, Usage: usage, ArgsUsage: args, Flags: targetFlags(flags...), Action: run}
}

// targetFlags select the fleet and its nodes and say how to reach them:
// every command that touches nodes takes them.
func targetFlags(extra ...ucli.Flag) []ucli.Flag {
	return append([]ucli.Flag{
		&ucli.StringFlag{Name: "flake", Value: ".", Usage: "flake directory or `REF` (path:DIR, a directory holding flake.nix)"},
		&ucli.StringFlag{Name: "config", Usage: "tether.toml to read (default: tether.toml beside flake.nix, if present)", TakesFile: true},
		&ucli.StringSliceFlag{Name: "ssh-key", Usage: "private key `FILE` (repeatable); default: $TETHER_SSH_KEY, ssh-agent, ~/.ssh/id_*", TakesFile: true},
		&ucli.StringSliceFlag{Name: "known-hosts", Usage: "known_hosts `FILE` pinning the nodes' host keys (repeatable); default ~/.ssh/known_hosts", TakesFile: true},
		&ucli.StringFlag{Name: "agents-dir", Usage: "directory holding tether-agent-linux-<arch> (default: $TETHER_AGENTS_DIR, those inside a release build, agents/ beside the binary, else built once from tether's source)", TakesFile: true},
		&ucli.IntFlag{Name: "parallel", Usage: "nodes handled at once (default: tether.toml's concurrency, else 16)"},
	}, extra...)
}

// target reads the target flags, with progress going to p.
func target(c *ucli.Context, p *progress) app.Target {
	t := app.Target{
		Flake: c.String("flake"), Config: c.String("config"), Nodes: c.Args().Slice(),
		KeyFiles: c.StringSlice("ssh-key"), KnownHostsFiles: c.StringSlice("known-hosts"),
		AgentsDir: c.String("agents-dir"), Parallel: c.Int("parallel"),
	}
	if p != nil {
		t.Progress = app.Progress{Events: p.Event, BuildLog: p.BuildLog()}
	}
	return t
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeJSONFile writes v to path, or to stdout for "-".
func writeJSONFile(flag, path string, stdout io.Writer, v any) error {
	if path == "-" {
		return writeJSON(stdout, v)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--%s: %w", flag, err)
	}
	if err := writeJSON(f, v); err != nil {
		f.Close()
		return fmt.Errorf("--%s: %w", flag, err)
	}
	return f.Close()
}
