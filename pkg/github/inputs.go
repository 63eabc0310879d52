package github

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Commands the action runs. "auto" picks one from the event.
const (
	CommandAuto     = "auto"
	CommandPlan     = "plan"
	CommandDeploy   = "deploy"
	CommandRollback = "rollback"
)

// InputNames lists every input of action.yml, as the action reads them.
// A test checks that action.yml declares exactly these and maps each one
// into the environment of its run step.
var InputNames = []string{
	"command",
	"flake",
	"nodes",
	"ssh-private-key",
	"known-hosts",
	"confirm-timeout",
	"dry-activate",
	"build-host",
	"parallel",
	"keep-going",
	"reboot",
	"github-token",
	"comment",
	"environment",
	"working-directory",
	"generation",
}

// InputEnv is the environment variable an input is read from: INPUT_
// followed by the upper-cased name, hyphens kept (INPUT_SSH-PRIVATE-KEY),
// which is what the runner sets for other kinds of actions. A composite
// action sets them itself in its run step's env. Outside GitHub, where a
// shell cannot export a name with a hyphen, the same name with
// underscores (INPUT_SSH_PRIVATE_KEY) is read when the first is unset.
func InputEnv(name string) string {
	return "INPUT_" + strings.ToUpper(strings.ReplaceAll(name, " ", "_"))
}

// Inputs are the action's inputs, parsed.
type Inputs struct {
	Command          string
	Flake            string
	Nodes            []string
	SSHPrivateKey    string
	KnownHosts       string
	ConfirmTimeout   time.Duration
	DryActivate      bool
	BuildHost        string
	Parallel         int
	KeepGoing        bool
	Reboot           bool
	GitHubToken      string
	Comment          bool
	Environment      string
	WorkingDirectory string
	// Generation is the rollback target; 0 means the previous one.
	Generation int
}

// DefaultEnvironment is the deployments environment when none is given.
const DefaultEnvironment = "production"

// readInput returns an input's value with surrounding blanks removed.
func readInput(getenv func(string) string, name string) string {
	v := getenv(InputEnv(name))
	if v == "" {
		v = getenv(strings.ReplaceAll(InputEnv(name), "-", "_"))
	}
	return strings.TrimSpace(v)
}

// parseInputs reads and checks every input, returning all problems at once.
func parseInputs(getenv func(string) string) (Inputs, error) {
	in := Inputs{
		Command:          strings.ToLower(readInput(getenv, "command")),
		Flake:            readInput(getenv, "flake"),
		Nodes:            splitNodes(readInput(getenv, "nodes")),
		SSHPrivateKey:    normalizeKey(readInput(getenv, "ssh-private-key")),
		KnownHosts:       readInput(getenv, "known-hosts"),
		BuildHost:        readInput(getenv, "build-host"),
		GitHubToken:      readInput(getenv, "github-token"),
		Environment:      readInput(getenv, "environment"),
		WorkingDirectory: readInput(getenv, "working-directory"),
	}
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("input %s: "+format, append([]any{name}, args...)...))
	}
	switch in.Command {
	case "":
		in.Command = CommandAuto
	case CommandAuto, CommandPlan, CommandDeploy, CommandRollback:
	default:
		bad("command", "%q is not one of auto, plan, deploy, rollback", in.Command)
	}
	if in.Flake == "" {
		in.Flake = "."
	}
	if in.Environment == "" {
		in.Environment = DefaultEnvironment
	}
	if strings.ContainsFunc(in.Environment, unicode.IsControl) || len(in.Environment) > 200 {
		bad("environment", "must be one line of at most 200 characters")
	}
	if in.KnownHosts != "" {
		in.KnownHosts += "\n"
	}
	var err error
	if in.ConfirmTimeout, err = parseDuration(readInput(getenv, "confirm-timeout")); err != nil {
		bad("confirm-timeout", "%v", err)
	}
	if in.DryActivate, err = parseBool(readInput(getenv, "dry-activate"), false); err != nil {
		bad("dry-activate", "%v", err)
	}
	if in.KeepGoing, err = parseBool(readInput(getenv, "keep-going"), false); err != nil {
		bad("keep-going", "%v", err)
	}
	if in.Reboot, err = parseBool(readInput(getenv, "reboot"), false); err != nil {
		bad("reboot", "%v", err)
	}
	if in.Comment, err = parseBool(readInput(getenv, "comment"), true); err != nil {
		bad("comment", "%v", err)
	}
	if in.Parallel, err = parseCount(readInput(getenv, "parallel")); err != nil {
		bad("parallel", "%v", err)
	}
	if in.Generation, err = parseCount(readInput(getenv, "generation")); err != nil {
		bad("generation", "%v", err)
	}
	return in, errors.Join(errs...)
}

// splitNodes splits a selection written with spaces, commas or newlines.
func splitNodes(s string) []string {
	f := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	if len(f) == 0 {
		return nil
	}
	return f
}

// normalizeKey gives a private key pasted into a secret Unix line ends and
// a final newline, which the key parser needs.
func normalizeKey(s string) string {
	if s == "" {
		return ""
	}
	return strings.ReplaceAll(s, "\r\n", "\n") + "\n"
}

// parseBool accepts true/false, on/off, yes/no and 1/0; "" is def.
func parseBool(s string, def bool) (bool, error) {
	switch strings.ToLower(s) {
	case "":
		return def, nil
	case "true", "on", "yes", "1":
		return true, nil
	case "false", "off", "no", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean (true/false, on/off)", s)
}

// parseDuration accepts a Go duration ("90s", "2m") or whole seconds.
func parseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("%q is negative", s)
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration such as 30s or 2m, or a number of seconds", s)
	}
	return d, nil
}

// parseCount accepts "" (0) or a non-negative integer.
func parseCount(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a non-negative whole number", s)
	}
	return n, nil
}
