package cli

import (
	"fmt"
	"io"
	"path"
	"text/tabwriter"

	ucli "github.com/urfave/cli/v2"

	"github.com/tetherdeploy/tether/internal/app"
	"github.com/tetherdeploy/tether/pkg/deploy"
)

func (c *command) statusCommand() *ucli.Command {
	return nodesCommand("status", "show each node's running system, generations, deploy in progress and last result", false, c.status,
		&ucli.BoolFlag{Name: "json", Usage: "print as JSON"},
		&ucli.BoolFlag{Name: "generations", Usage: "list every generation of each node"},
	)
}

// status runs `tether status`.
func (c *command) status(ctx *ucli.Context) error {
	st, err := c.app.Status(ctx.Context, app.StatusRequest{Target: target(ctx, nil)})
	if st == nil {
		return err
	}
	if ctx.Bool("json") {
		if err := writeJSON(c.stdout, st); err != nil {
			return err
		}
	} else {
		printStatus(c.stdout, st, ctx.Bool("generations"))
	}
	return exit(app.StatusExit(st, err))
}

func printStatus(w io.Writer, st []deploy.NodeStatus, generations bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSYSTEM\tGENERATION\tDEPLOY\tLAST RESULT")
	for _, n := range st {
		if n.Status == nil {
			fmt.Fprintf(tw, "%s\t-\t-\t-\tunreachable: %s\n", n.Node, firstLine(n.Error))
			continue
		}
		s := n.Status
		sys := "-"
		if s.CurrentSystem != "" {
			sys = path.Base(s.CurrentSystem)
		}
		inProgress := "idle"
		if s.InProgress != nil {
			inProgress = fmt.Sprintf("in progress: %s by %s", s.InProgress.DeployID, s.InProgress.Who)
		}
		last := "-"
		if s.Last != nil {
			last = fmt.Sprintf("%s (%s, %s)", s.Last.Status, s.Last.DeployID, s.Last.Finished.Local().Format("2006-01-02 15:04:05"))
			if s.Last.Reason != "" {
				last += ": " + firstLine(s.Last.Reason)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", n.Node, sys, s.CurrentGeneration, inProgress, last)
		if generations {
			for _, g := range s.Generations {
				mark := " "
				if g.Current {
					mark = "*"
				}
				fmt.Fprintf(tw, "\t%s %d\t%s\t%s\t\n", mark, g.Number, path.Base(g.Path), g.Date.Local().Format("2006-01-02 15:04:05"))
			}
		}
	}
	tw.Flush()
}

func firstLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i] + " …"
		}
	}
	return s
}
