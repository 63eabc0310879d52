// Package cli wires tether's commands to the packages that do the work.
//
// It is the only place (with pkg/github) that reads the environment, and it
// reads it from the Env it is given, never from the process, so every command
// can be driven end to end from tests.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/tetherdeploy/tether/internal/version"
)

// Env is the process environment as KEY=VALUE pairs.
type Env []string

// Get returns the value of key, or "" when it is unset.
func (e Env) Get(key string) string {
	for i := len(e) - 1; i >= 0; i-- {
		k, v, ok := strings.Cut(e[i], "=")
		if ok && k == key {
			return v
		}
	}
	return ""
}

// Run runs tether with args (args[0] is the program name) and returns the
// process exit code.
func Run(ctx context.Context, args []string, env Env, stdout, stderr io.Writer) int {
	app := newApp(env, stdout, stderr)
	var unknown string
	app.CommandNotFound = func(_ *ucli.Context, name string) { unknown = name }
	err := app.RunContext(ctx, args)
	if err == nil && unknown != "" {
		err = usageError(fmt.Errorf("unknown command %q (see tether --help)", unknown))
	}
	if err == nil {
		return ExitOK
	}
	code := ExitCode(err)
	var silent *silentError
	if !errors.As(err, &silent) {
		fmt.Fprintf(stderr, "tether: %v\n", err)
	}
	return code
}

func newApp(env Env, stdout, stderr io.Writer) *ucli.App {
	app := &ucli.App{
		Name:                 "tether",
		Usage:                "safe NixOS deployments with magic rollback",
		Writer:               stdout,
		ErrWriter:            stderr,
		HideVersion:          true,
		EnableBashCompletion: false,
		// Errors are printed once, by Run, with their exit code.
		ExitErrHandler: func(*ucli.Context, error) {},
		OnUsageError: func(_ *ucli.Context, err error, _ bool) error {
			return usageError(err)
		},
		Commands: []*ucli.Command{
			planCommand(env, stderr),
			deployCommand(env, stderr),
			rollbackCommand(env, stderr),
			statusCommand(env, stderr),
			actionCommand(env, stderr),
			versionCommand(),
		},
	}
	for _, c := range app.Commands {
		c.OnUsageError = func(_ *ucli.Context, err error, _ bool) error { return usageError(err) }
	}
	return app
}

func versionCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "version",
		Usage: "print version, commit and Go version",
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "json", Usage: "print as JSON"},
		},
		Action: func(c *ucli.Context) error {
			info := version.Get()
			if c.Bool("json") {
				return writeJSON(c.App.Writer, info)
			}
			_, err := fmt.Fprintln(c.App.Writer, info.String())
			return err
		},
	}
}
