// Package cli is tether's command line: it parses flags into the
// application layer's requests (internal/app), renders what comes back,
// and returns the exit code the application layer maps the result to. It
// wires nothing itself, so `tether deploy` and `tether action` cannot
// drift apart.
//
// It reads the environment only from the Env it is given, never from the
// process, so every command can be driven end to end from tests.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/tetherdeploy/tether/internal/app"
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
	a := &app.App{Getenv: env.Get, Log: stderr}
	return RunApp(ctx, a, args, env, stdout, stderr)
}

// RunApp is Run on a given application layer, whose seams a test may have
// filled (a fake engine, a fake evaluator).
func RunApp(ctx context.Context, a *app.App, args []string, env Env, stdout, stderr io.Writer) int {
	c := &command{app: a, env: env, stdout: stdout, stderr: stderr}
	ua := c.newApp()
	err := ua.RunContext(ctx, flagsFirst(ua, args))
	if err == nil && c.unknown != "" {
		err = app.Usage(fmt.Errorf("unknown command %q (see tether --help)", c.unknown))
	}
	if err == nil {
		return app.ExitOK
	}
	var ce *codeError
	if errors.As(err, &ce) {
		return ce.code
	}
	fmt.Fprintf(stderr, "tether: %v\n", err)
	return app.ErrorExit(err)
}

// codeError ends a command that already showed its outcome with that
// outcome's exit code.
type codeError struct{ code int }

func (e *codeError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// exit turns an exit code into the error a command returns.
func exit(code int) error {
	if code == app.ExitOK {
		return nil
	}
	return &codeError{code: code}
}

// command is one invocation of the command line.
type command struct {
	app            *app.App
	env            Env
	stdout, stderr io.Writer
	unknown        string
}

func (c *command) newApp() *ucli.App {
	a := &ucli.App{
		Name:                 "tether",
		Usage:                "safe NixOS deployments with magic rollback",
		Writer:               c.stdout,
		ErrWriter:            c.stderr,
		HideVersion:          true,
		EnableBashCompletion: false,
		// Errors are printed once, by RunApp, with their exit code.
		ExitErrHandler:  func(*ucli.Context, error) {},
		CommandNotFound: func(_ *ucli.Context, name string) { c.unknown = name },
		OnUsageError: func(_ *ucli.Context, err error, _ bool) error {
			return app.Usage(err)
		},
		Commands: []*ucli.Command{
			c.planCommand(),
			c.deployCommand(),
			c.rollbackCommand(),
			c.statusCommand(),
			c.actionCommand(),
			versionCommand(),
			c.completionCommand(),
			c.completeCommand(),
		},
	}
	for _, cmd := range a.Commands {
		cmd.OnUsageError = func(_ *ucli.Context, err error, _ bool) error { return app.Usage(err) }
	}
	return a
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
