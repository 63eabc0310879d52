package cli

import (
	ucli "github.com/urfave/cli/v2"

	"github.com/tetherdeploy/tether/pkg/github"
)

func (c *command) actionCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "action",
		Usage: "run as a GitHub Actions step: plan on pull requests, deploy on pushes, rollback on dispatch (reads INPUT_* and GITHUB_*)",
		Action: func(ctx *ucli.Context) error {
			return exit(github.RunAction(ctx.Context, github.ActionOptions{
				Getenv: c.env.Get,
				Stdout: c.stdout,
				Stderr: c.stderr,
				Ops:    c.app,
			}))
		},
	}
}
