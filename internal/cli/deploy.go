package cli

import (
	"errors"

	ucli "github.com/urfave/cli/v2"

	"github.com/tetherdeploy/tether/internal/app"
	"github.com/tetherdeploy/tether/pkg/agent"
	"github.com/tetherdeploy/tether/pkg/deploy"
)

func (c *command) deployCommand() *ucli.Command {
	return nodesCommand("deploy", "build, copy and activate the selected nodes with magic rollback", false, c.deploy,
		&ucli.DurationFlag{Name: "confirm-timeout", Usage: "how long a node waits for the confirmation before rolling back (overrides the configuration)"},
		&ucli.DurationFlag{Name: "activation-timeout", Usage: "how long an activation may run before it is killed and rolled back"},
		&ucli.BoolFlag{Name: "keep-going", Usage: "deploy the other nodes when one fails (default: roll back the ones already deployed)"},
		&ucli.BoolFlag{Name: "dry-activate", Usage: "copy and run the dry activation only: show what would change, change nothing"},
		&ucli.BoolFlag{Name: "boot", Usage: "make the new system the boot default without activating it"},
		&ucli.BoolFlag{Name: "allow-failed-units", Usage: "keep an activation in which units failed to start"},
		&ucli.BoolFlag{Name: "reboot", Usage: "boot the new system once and make it the default only when confirmed from that boot (for kernel, initrd or systemd changes; needs systemd-boot or GRUB)"},
		&ucli.StringFlag{Name: "compress", Value: "auto", Usage: "zstd-compress closures on the way: auto (unless the node has fastConnection), on, off"},
		&ucli.StringFlag{Name: "build-host", Usage: "build every selected node's closure on `HOST` (a node name, user@host[:port], or \"local\"), overriding the configuration"},
		&ucli.StringFlag{Name: "json", Usage: "write the per-node results as JSON to `FILE` (- for stdout)", TakesFile: true},
	)
}

// deploy runs `tether deploy`.
func (c *command) deploy(ctx *ucli.Context) error {
	if ctx.Bool("dry-activate") && ctx.Bool("boot") {
		return app.Usage(errors.New("--dry-activate and --boot exclude each other"))
	}
	if ctx.Bool("reboot") && (ctx.Bool("dry-activate") || ctx.Bool("boot")) {
		return app.Usage(errors.New("--reboot switches to the new system by booting it: not with --dry-activate or --boot"))
	}
	p := newProgress(c.stderr, c.env)
	defer p.Close()
	req := app.DeployRequest{
		Target:            target(ctx, p),
		KeepGoing:         ctx.Bool("keep-going"),
		ActivationTimeout: ctx.Duration("activation-timeout"),
		AllowFailedUnits:  ctx.Bool("allow-failed-units"),
		Reboot:            ctx.Bool("reboot"),
		Compress:          deploy.Compression(ctx.String("compress")),
	}
	req.ConfirmTimeout = ctx.Duration("confirm-timeout")
	req.BuildHost = ctx.String("build-host")
	switch {
	case ctx.Bool("dry-activate"):
		req.Action = agent.ActionDryActivate
	case ctx.Bool("boot"):
		req.Action = agent.ActionBoot
	}
	rep, err := c.app.Deploy(ctx.Context, req)
	p.Close()
	return c.finishReport(ctx, rep, err)
}

func (c *command) rollbackCommand() *ucli.Command {
	return nodesCommand("rollback", "activate the previous (or a named) generation, under the same magic-rollback protection", true, c.rollback,
		&ucli.IntFlag{Name: "to-generation", Usage: "generation `N` to go back to (default: the one before the current)"},
		&ucli.DurationFlag{Name: "confirm-timeout", Usage: "how long a node waits for the confirmation before undoing the rollback"},
		&ucli.StringFlag{Name: "json", Usage: "write the per-node results as JSON to `FILE` (- for stdout)", TakesFile: true},
	)
}

// rollback runs `tether rollback`.
func (c *command) rollback(ctx *ucli.Context) error {
	p := newProgress(c.stderr, c.env)
	defer p.Close()
	req := app.RollbackRequest{Target: target(ctx, p), Generation: ctx.Int("to-generation")}
	req.ConfirmTimeout = ctx.Duration("confirm-timeout")
	rep, err := c.app.Rollback(ctx.Context, req)
	p.Close()
	return c.finishReport(ctx, rep, err)
}

// finishReport prints the summary, writes --json and ends with the run's
// exit code.
func (c *command) finishReport(ctx *ucli.Context, rep *deploy.Report, err error) error {
	if rep == nil {
		return err
	}
	printSummary(c.stdout, rep)
	if p := ctx.String("json"); p != "" {
		if err := writeJSONFile("json", p, c.stdout, rep); err != nil {
			return err
		}
	}
	return exit(app.DeployExit(rep, err))
}
