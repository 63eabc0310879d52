package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/tetherdeploy/tether/internal/app"
	"github.com/tetherdeploy/tether/internal/atomicfile"
	"github.com/tetherdeploy/tether/pkg/fleet"
	"github.com/tetherdeploy/tether/pkg/nix"
)

// completeCommand is the hidden command the completion scripts call:
// `tether __complete WORD... CURRENT` prints the candidates for CURRENT,
// one a line, given the words before it. A first line ":file" or ":dir"
// asks the shell to complete a path itself. The scripts stay small and
// alike across shells; the knowledge of commands, flags and nodes stays
// here.
const completeCommand = "__complete"

// completionWait bounds how long completing a node name may wait for the
// flake's evaluation; past it, the names of the last evaluation that
// finished are offered (or only tether.toml's).
const completionWait = 2 * time.Second

func (c *command) completionCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "completion",
		Usage:     "print the shell completion script for bash, zsh or fish",
		ArgsUsage: "bash|zsh|fish",
		Description: "Completes commands, flags and node names (read from the flake within " + completionWait.String() + ", else from the last reading).\n\n" +
			"   bash: source <(tether completion bash)           (e.g. in ~/.bashrc)\n" +
			"   zsh:  tether completion zsh > \"${fpath[1]}/_tether\"\n" +
			"   fish: tether completion fish > ~/.config/fish/completions/tether.fish",
		Action: func(ctx *ucli.Context) error {
			script, ok := completionScripts[ctx.Args().First()]
			if !ok || ctx.Args().Len() != 1 {
				return app.Usage(fmt.Errorf("completion: name one shell: bash, zsh or fish"))
			}
			_, err := fmt.Fprint(c.stdout, script)
			return err
		},
	}
}

func (c *command) completeCommand() *ucli.Command {
	return &ucli.Command{
		Name:            completeCommand,
		Hidden:          true,
		SkipFlagParsing: true,
		Action: func(ctx *ucli.Context) error {
			for _, s := range c.complete(ctx.Context, ctx.App, ctx.Args().Slice()) {
				fmt.Fprintln(c.stdout, s)
			}
			return nil
		},
	}
}

// complete returns the candidates for the last of words.
func (c *command) complete(ctx context.Context, a *ucli.App, words []string) []string {
	cur := ""
	if len(words) > 0 {
		cur, words = words[len(words)-1], words[:len(words)-1]
	}
	at := slices.IndexFunc(words, func(w string) bool { return !strings.HasPrefix(w, "-") })
	if at < 0 {
		var names []string
		for _, cmd := range a.VisibleCommands() {
			names = append(names, cmd.Name)
		}
		return withPrefix(names, cur)
	}
	cmd := a.Command(words[at])
	if cmd == nil {
		return nil
	}
	rest := words[at+1:]
	ended := slices.Contains(rest, "--")
	if !ended && len(rest) > 0 {
		prev := rest[len(rest)-1]
		if name := strings.TrimLeft(prev, "-"); prev != name && !strings.Contains(name, "=") && takesValue(cmd, name) {
			return flagValues(cmd, name, cur)
		}
	}
	if !ended && strings.HasPrefix(cur, "-") {
		var names []string
		for _, f := range cmd.Flags {
			for _, n := range f.Names() {
				if len(n) == 1 {
					names = append(names, "-"+n)
				} else {
					names = append(names, "--"+n)
				}
			}
		}
		return withPrefix(append(names, "--help"), cur)
	}
	switch cmd.Name {
	case "completion":
		return withPrefix([]string{"bash", "fish", "zsh"}, cur)
	case "plan", "deploy", "rollback", "status":
		names := c.nodeNames(ctx, flagValue(rest, "flake"), flagValue(rest, "config"))
		cands := slices.Clone(names.Nodes)
		for _, t := range names.Tags {
			cands = append(cands, "@"+t)
		}
		return withPrefix(cands, cur)
	}
	return nil
}

// flagValues completes the value of a command's flag.
func flagValues(cmd *ucli.Command, name, cur string) []string {
	switch name {
	case "compress":
		return withPrefix([]string{"auto", "on", "off"}, cur)
	case "format":
		return withPrefix([]string{"text", "markdown", "json"}, cur)
	case "flake", "agents-dir":
		return []string{":dir"}
	}
	for _, f := range cmd.Flags {
		if !slices.Contains(f.Names(), name) {
			continue
		}
		switch f := f.(type) {
		case *ucli.StringFlag:
			if f.TakesFile {
				return []string{":file"}
			}
		case *ucli.StringSliceFlag:
			if f.TakesFile {
				return []string{":file"}
			}
		}
	}
	return nil
}

// flagValue is the last value given to --name in words, "" when none.
func flagValue(words []string, name string) string {
	v := ""
	for i, w := range words {
		if w == "--" {
			break
		}
		if val, ok := strings.CutPrefix(w, "--"+name+"="); ok {
			v = val
		} else if w == "--"+name && i+1 < len(words) {
			v = words[i+1]
		}
	}
	return v
}

func withPrefix(cands []string, prefix string) []string {
	var out []string
	for _, s := range cands {
		if strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out
}

// nodeNames lists the nodes and tags of the flake, from an evaluation of
// their names bounded by completionWait, else from the last one that
// finished (kept in the user's cache directory), else from tether.toml
// alone. A flake that is not a local directory is not evaluated.
func (c *command) nodeNames(ctx context.Context, flake, config string) fleet.Names {
	dir, ref, ok := localFlake(flake)
	if !ok {
		return fleet.Names{}
	}
	cache := c.namesCache(dir)
	ctx, cancel := context.WithTimeout(ctx, completionWait)
	defer cancel()
	ev := c.app.Eval
	if ev == nil {
		ev = &nix.Runner{Exec: c.app.Nix} // its stderr dropped: nothing may reach the terminal
	}
	names, err := fleet.ListNames(ctx, ev, fleet.LoadOptions{Dir: dir, Flake: ref, ConfigFile: config})
	if err == nil {
		if data, err := json.Marshal(names); err == nil && cache != "" && os.MkdirAll(filepath.Dir(cache), 0o700) == nil {
			_ = atomicfile.WriteFile(cache, data, 0o600)
		}
		return names
	}
	var cached fleet.Names
	if data, rerr := os.ReadFile(cache); rerr == nil && json.Unmarshal(data, &cached) == nil {
		// What the flake had last time, plus what tether.toml has now.
		cached.Nodes = append(cached.Nodes, names.Nodes...)
		cached.Tags = append(cached.Tags, names.Tags...)
		slices.Sort(cached.Nodes)
		slices.Sort(cached.Tags)
		return fleet.Names{Nodes: slices.Compact(cached.Nodes), Tags: slices.Compact(cached.Tags)}
	}
	return names
}

// localFlake reads the --flake argument as the application layer does:
// a directory, or path:DIR; anything else is not read here.
func localFlake(arg string) (dir, ref string, ok bool) {
	switch {
	case arg == "":
		arg = "."
	case strings.HasPrefix(arg, "path:"):
		dir, _, _ = strings.Cut(strings.TrimPrefix(arg, "path:"), "?")
		dir, _, _ = strings.Cut(dir, "#")
		abs, err := filepath.Abs(dir)
		return abs, arg, err == nil
	case strings.Contains(arg, ":"):
		return "", "", false
	}
	abs, err := filepath.Abs(arg)
	return abs, abs, err == nil
}

// namesCache is the file keeping the last names read from the flake in
// dir; "" when the user has no cache directory.
func (c *command) namesCache(dir string) string {
	base := c.env.Get("XDG_CACHE_HOME")
	if base == "" {
		home := c.env.Get("HOME")
		if home == "" {
			return ""
		}
		base = filepath.Join(home, ".cache")
	}
	sum := sha256.Sum256([]byte(dir))
	return filepath.Join(base, "tether", "completion", hex.EncodeToString(sum[:12])+".json")
}

// completionScripts call `tether __complete` with the words up to the
// cursor and offer what it prints, literally: candidates are command and
// flag names, and node names and tags that fleet.ListNames checked, but no
// script lets a candidate reach a shell's expansion anyway.
var completionScripts = map[string]string{
	"bash": `# bash completion for tether. Load it with: source <(tether completion bash)
_tether() {
	local cur=${COMP_WORDS[COMP_CWORD]}
	local out
	out=$(tether __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null) || return 0
	COMPREPLY=()
	case $out in
	:file*) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -f -- "$cur") ;;
	:dir*) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -d -- "$cur") ;;
	?*) mapfile -t COMPREPLY <<<"$out" ;;
	esac
}
complete -F _tether tether
`,
	"zsh": `#compdef tether
# zsh completion for tether. Put it on $fpath as _tether:
#   tether completion zsh > "${fpath[1]}/_tether"
# or load it after compinit with: source <(tether completion zsh)
_tether() {
	local -a out
	out=("${(@f)$(tether __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
	case $out[1] in
	:file) _files ;;
	:dir) _files -/ ;;
	*) compadd -- "${(@)out:#}" ;;
	esac
}
if [[ $funcstack[1] == _tether ]]; then
	_tether "$@"
else
	compdef _tether tether
fi
`,
	"fish": `# fish completion for tether. Load it with: tether completion fish | source
# or keep it in ~/.config/fish/completions/tether.fish
function __tether_complete
	set -l words (commandline -opc)
	set -e words[1]
	set -l cur (commandline -ct)
	set -l out (tether __complete $words "$cur" 2>/dev/null)
	switch "$out[1]"
		case :file
			__fish_complete_path "$cur"
		case :dir
			__fish_complete_directories "$cur"
		case '*'
			printf '%s\n' $out
	end
end
complete -c tether -f -a '(__tether_complete)'
`,
}
