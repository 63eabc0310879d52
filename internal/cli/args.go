package cli

import (
	"slices"
	"strings"

	ucli "github.com/urfave/cli/v2"
)

// flagsFirst moves a command's flags ahead of its other arguments, so that
// `tether deploy alpha --json out.json` means what it says: the command
// line parser stops at the first argument that is not a flag, where
// people put flags anywhere. `--` still ends the flags: what follows it
// is taken as arguments, even when it starts with a dash. args[0] is the
// program; arguments before the command name are left as they are.
func flagsFirst(app *ucli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	at := 1 + slices.IndexFunc(args[1:], func(a string) bool { return !strings.HasPrefix(a, "-") })
	if at == 0 {
		return args
	}
	cmd := app.Command(args[at])
	if cmd == nil || cmd.SkipFlagParsing {
		return args
	}
	rest := args[at+1:]
	var flags, plain []string
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			plain = append(plain, rest[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			plain = append(plain, a)
			continue
		}
		flags = append(flags, a)
		if name := strings.TrimLeft(a, "-"); !strings.Contains(name, "=") && takesValue(cmd, name) && i+1 < len(rest) {
			flags = append(flags, rest[i+1])
			i++
		}
	}
	out := append(slices.Clone(args[:at+1]), flags...)
	if len(plain) > 0 {
		out = append(append(out, "--"), plain...)
	}
	return out
}

// takesValue reports whether the command's flag name (or alias) reads the
// next argument as its value: every flag but a boolean one does.
func takesValue(cmd *ucli.Command, name string) bool {
	for _, f := range cmd.Flags {
		if slices.Contains(f.Names(), name) {
			_, isBool := f.(*ucli.BoolFlag)
			return !isBool
		}
	}
	return false
}
