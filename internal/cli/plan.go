package cli

import (
	"fmt"
	"io"
	"os"

	ucli "github.com/urfave/cli/v2"

	"github.com/tetherdeploy/tether/internal/app"
	"github.com/tetherdeploy/tether/pkg/plan"
	"github.com/tetherdeploy/tether/pkg/report"
)

func (c *command) planCommand() *ucli.Command {
	return nodesCommand("plan", "show what a deploy would change on each node, without changing anything", false, c.plan,
		&ucli.BoolFlag{Name: "dry-activate", Usage: "also copy each changed closure and run its dry activation on the node (runs the change's code as root there)"},
		&ucli.StringFlag{Name: "format", Value: "text", Usage: "output `FORMAT`: text, markdown or json"},
		&ucli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the plan to `FILE` instead of stdout", TakesFile: true},
		&ucli.StringFlag{Name: "json", Usage: "also write the plan as JSON to `FILE`", TakesFile: true},
	)
}

// plan runs `tether plan`.
func (c *command) plan(ctx *ucli.Context) error {
	format := ctx.String("format")
	if format != "text" && format != "markdown" && format != "json" {
		return app.Usage(fmt.Errorf("--format %q: want text, markdown or json", format))
	}
	p := newProgress(c.stderr, c.env)
	defer p.Close()
	pl, err := c.app.Plan(ctx.Context, app.PlanRequest{Target: target(ctx, p), DryActivate: ctx.Bool("dry-activate")})
	p.Close()
	if pl == nil {
		return err
	}
	w := c.stdout
	if o := ctx.String("output"); o != "" {
		f, err := os.Create(o)
		if err != nil {
			return fmt.Errorf("--output: %w", err)
		}
		defer f.Close()
		w = f
	}
	if err := writePlan(w, pl, format); err != nil {
		return err
	}
	if j := ctx.String("json"); j != "" {
		if err := writeJSONFile("json", j, c.stdout, pl); err != nil {
			return err
		}
	}
	return exit(app.PlanExit(pl, err))
}

func writePlan(w io.Writer, p *plan.Plan, format string) error {
	switch format {
	case "markdown":
		_, err := io.WriteString(w, report.PlanMarkdown(p, report.PlanMarkdownOptions{}))
		return err
	case "json":
		return report.PlanJSON(w, p)
	}
	return report.PlanText(w, p)
}
