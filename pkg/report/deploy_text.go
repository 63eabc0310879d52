package report

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tetherdeploy/tether/pkg/deploy"
)

// DeployText writes the outcome of a deploy or rollback for a person at a
// terminal or reading a CI log: a headline, one table row per node
// (status, generation, old -> new system, what was copied, how long it
// took), then for every node that did not simply succeed its error, the
// rollback reason and per-profile outcomes. Text from targets is cleaned of
// control characters first.
func DeployText(w io.Writer, r *deploy.Report) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "tether %s", deployVerb(r))
	if r.Flake != "" {
		fmt.Fprintf(bw, " of %s", clean(r.Flake))
	}
	if r.Action != "" && !r.Action.IsRollback() && r.Action != "dry-activate" {
		fmt.Fprintf(bw, " (%s)", clean(string(r.Action)))
	}
	fmt.Fprintf(bw, ": %s", deployHeadline(r))
	if d := deployDuration(deployRunTime(r)); d != "" {
		fmt.Fprintf(bw, " in %s", d)
	}
	bw.WriteString("\n")
	if r.Interrupted {
		bw.WriteString("the run was interrupted: nodes it had not reached were skipped\n")
	}
	if len(r.Results) == 0 {
		return bw.Flush()
	}
	bw.WriteString("\n")

	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATUS\tGEN\tSYSTEM\tCOPIED\tTIME")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for i := range r.Results {
		res := &r.Results[i]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n",
			clean(res.Node), deployStatusText(r, res), dash(deployGeneration(res)),
			dash(clean(deployChange(res.Previous, deployTarget(res), "->", asIs))),
			dash(deployCopied(res.Copied)), dash(deployDuration(time.Duration(res.Timings.Total))))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	for i := range r.Results {
		res := &r.Results[i]
		if !deployNeedsDetails(res) {
			continue
		}
		fmt.Fprintf(bw, "\n%s: %s\n", clean(res.Node), deployStatusText(r, res))
		deployTextDetails(bw, res)
	}
	return bw.Flush()
}

// deployNeedsDetails reports whether a node has more to say than its row.
func deployNeedsDetails(res *deploy.Result) bool {
	return res.Error != "" || res.Reason != "" || len(res.Profiles) > 1 || res.Status == deploy.StatusUncertain || len(res.RebootFor) > 0
}

func deployTextDetails(w *bufio.Writer, res *deploy.Result) {
	if res.Reason != "" && !strings.Contains(res.Error, res.Reason) {
		fmt.Fprintf(w, "  reason: %s\n", strings.Join(cleanLines(res.Reason), " / "))
	}
	for _, l := range cleanLines(res.Error) {
		fmt.Fprintf(w, "  %s\n", l)
	}
	if r := rebootText(res.RebootFor); r != "" {
		fmt.Fprintf(w, "  %s\n", r)
	}
	if res.Status == deploy.StatusUncertain {
		if res.Current != "" {
			fmt.Fprintf(w, "  last seen on: %s\n", clean(res.Current))
		}
		w.WriteString("  check the node with `tether status` before deploying again\n")
	}
	if len(res.Profiles) > 1 {
		for _, p := range res.Profiles {
			fmt.Fprintf(w, "  profile %s: %s", clean(p.Profile), clean(string(p.Status)))
			if p.Generation > 0 {
				fmt.Fprintf(w, ", generation %d", p.Generation)
			}
			if p.Error != "" {
				fmt.Fprintf(w, ": %s", strings.Join(cleanLines(p.Error), " / "))
			}
			w.WriteString("\n")
		}
	}
	if ph := deployPhases(res.Timings, ", "); ph != "" {
		fmt.Fprintf(w, "  %s\n", ph)
	}
	if res.DeployID != "" {
		fmt.Fprintf(w, "  deploy id: %s\n", clean(res.DeployID))
	}
}
