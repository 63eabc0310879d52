package report

import (
	"fmt"
	"html"
	"strings"
	"time"

	"github.com/tetherdeploy/tether/pkg/deploy"
)

// DeployMarkdownOptions shapes the Markdown rendering of a deploy or
// rollback.
type DeployMarkdownOptions struct {
	// Title is the heading; "" means "tether deploy" (or "tether
	// rollback", "tether dry-activate" after the report's action).
	Title string
	// Commit is the revision that was deployed, shown when set.
	Commit string
	// Environment is the deployments environment the nodes were
	// reported under, shown when set.
	Environment string
	// Limit is the most bytes the result may have; 0 means
	// DefaultCommentLimit. Callers that add their own text subtract its
	// length first.
	Limit int
	// RunURL, when set, is linked as the full log of the run and from the
	// note that says the report was shortened.
	RunURL string
}

// DeployMarkdown renders the outcome of a deploy or rollback for a job
// summary or a pull request comment: a heading with the counts, one table
// row per node (status, old → new system, generation, bytes copied, time),
// then a <details> block for every node that failed, rolled back or needs
// a word more, holding its error, the rollback reason and the time of each
// phase.
//
// The result never exceeds the limit: error texts are shortened first
// (keeping their first line and their last lines, where a build log's
// cause is), then whole detail blocks are left out from the end, then
// table rows; a note at the top says so. Every name and message is escaped
// so that it stays text.
func DeployMarkdown(r *deploy.Report, opts DeployMarkdownOptions) string {
	if opts.Limit <= 0 {
		opts.Limit = DefaultCommentLimit
	}
	if opts.Title == "" {
		opts.Title = "tether " + deployVerb(r)
	}
	d := &deployMD{r: r, opts: opts, runURL: planSafeURL(opts.RunURL), errLines: -1}
	for i := range r.Results {
		if deployNeedsDetails(&r.Results[i]) {
			d.detailed = append(d.detailed, i)
		}
	}
	d.blocks = len(d.detailed)
	d.rows = len(r.Results)
	return d.fit()
}

// deployMD is a rendering with its current amount of shortening.
type deployMD struct {
	r        *deploy.Report
	opts     DeployMarkdownOptions
	runURL   string
	detailed []int // indexes of results with a details block
	errLines int   // most error lines per node; -1 for all
	blocks   int   // detail blocks kept, from the start of detailed
	rows     int   // table rows kept
}

func (d *deployMD) shortened() bool {
	return d.cutsErrors() || d.blocks < len(d.detailed) || d.rows < len(d.r.Results)
}

// cutsErrors reports whether the current budget shortens a kept error.
func (d *deployMD) cutsErrors() bool {
	if d.errLines < 0 {
		return false
	}
	for _, i := range d.detailed[:d.blocks] {
		if len(planLines(d.r.Results[i].Error)) > d.errLines {
			return true
		}
	}
	return false
}

func (d *deployMD) fit() string {
	limit := d.opts.Limit
	out := d.render()
	for _, n := range []int{40, 20, 10, 5, 3} {
		if len(out) <= limit {
			return out
		}
		d.errLines = n
		out = d.render()
	}
	for len(out) > limit && d.blocks > 0 {
		d.blocks--
		out = d.render()
	}
	for len(out) > limit && d.rows > 0 {
		d.rows--
		out = d.render()
	}
	return planClip(out, limit)
}

func (d *deployMD) render() string {
	r := d.r
	var b strings.Builder
	fmt.Fprintf(&b, "### %s: %s\n\n", planMDText(d.opts.Title), deployHeadline(r))

	var facts []string
	if r.Flake != "" {
		f := "Flake " + planMDCode(r.Flake)
		if d.opts.Commit != "" {
			f += " at " + planMDCode(d.opts.Commit)
		}
		facts = append(facts, f)
	} else if d.opts.Commit != "" {
		facts = append(facts, "Commit "+planMDCode(d.opts.Commit))
	}
	if r.Action != "" && !r.Action.IsRollback() {
		facts = append(facts, "action "+planMDCode(string(r.Action)))
	}
	if d.opts.Environment != "" {
		facts = append(facts, "environment "+planMDCode(d.opts.Environment))
	}
	if !r.Started.IsZero() {
		facts = append(facts, r.Started.UTC().Format("2006-01-02 15:04 UTC"))
	}
	if t := deployDuration(deployRunTime(r)); t != "" {
		facts = append(facts, t)
	}
	if len(facts) > 0 {
		b.WriteString(strings.Join(facts, " · ") + "\n\n")
	}
	if d.shortened() {
		d.writeNote(&b)
	}
	if r.Interrupted {
		b.WriteString("> [!WARNING]\n> The run was interrupted: nodes it had not reached were skipped.\n\n")
	}

	if len(r.Results) > 0 {
		b.WriteString("| Node | Status | System | Generation | Copied | Time |\n|:--|:--|:--|--:|--:|--:|\n")
		for i := range r.Results[:d.rows] {
			b.WriteString(d.row(&r.Results[i]))
		}
		if cut := len(r.Results) - d.rows; cut > 0 {
			fmt.Fprintf(&b, "| … %d more node%s |\n", cut, planPlural(cut))
		}
		b.WriteString("\n")
	}

	for _, i := range d.detailed[:d.blocks] {
		d.details(&b, &r.Results[i])
	}
	if n := len(d.detailed) - d.blocks; n > 0 {
		fmt.Fprintf(&b, "_Details of %d%s node%s left out to fit the limit._\n\n", n, map[bool]string{true: " more", false: ""}[d.blocks > 0], planPlural(n))
	}
	if d.runURL != "" {
		fmt.Fprintf(&b, "[Run log](%s)\n", d.runURL)
	}
	return b.String()
}

func (d *deployMD) writeNote(b *strings.Builder) {
	var what []string
	if d.cutsErrors() {
		what = append(what, "long errors were shortened")
	}
	if n := len(d.detailed) - d.blocks; n > 0 {
		what = append(what, fmt.Sprintf("details of %d node%s left out", n, planPlural(n)))
	}
	if n := len(d.r.Results) - d.rows; n > 0 {
		what = append(what, fmt.Sprintf("%d node%s left out of the table", n, planPlural(n)))
	}
	fmt.Fprintf(b, "> [!NOTE]\n> This report was shortened to fit the %s-character limit: %s.", planThousands(d.opts.Limit), strings.Join(what, "; "))
	if d.runURL != "" {
		fmt.Fprintf(b, " The full report is in the [job summary](%s).", d.runURL)
	}
	b.WriteString("\n\n")
}

func (d *deployMD) row(res *deploy.Result) string {
	cells := []string{
		planMDCode(res.Node),
		deployStatusIcon(res.Status) + " " + planMDText(deployStatusText(d.r, res)),
		deployMDChange(res.Previous, deployTarget(res)),
		deployDash(deployGeneration(res)),
		deployDash(deployCopied(res.Copied)),
		deployDash(deployDuration(time.Duration(res.Timings.Total))),
	}
	return "| " + strings.Join(cells, " | ") + " |\n"
}

func deployDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// deployMDChange is the System cell: old → new as code, hashes added when
// the two would read the same.
func deployMDChange(prev, next string) string {
	code := func(p string) string { return planMDCode(deploySystemLabel(p)) }
	switch {
	case prev == "" && next == "":
		return "–"
	case prev == "":
		return "→ " + code(next)
	case next == "":
		return code(prev) + " →"
	case prev == next:
		return code(next) + " (unchanged)"
	}
	a, b := deploySystemLabel(prev), deploySystemLabel(next)
	if a == b {
		return planMDCode(deploySystemHash(prev)+" "+a) + " → " + planMDCode(deploySystemHash(next)+" "+b)
	}
	return code(prev) + " → " + code(next)
}

func (d *deployMD) details(b *strings.Builder, res *deploy.Result) {
	fmt.Fprintf(b, "<details><summary>%s · %s</summary>\n\n", planHTMLCode(res.Node), html.EscapeString(deployStatusText(d.r, res)))
	var items []string
	if res.Reason != "" && !strings.Contains(res.Error, res.Reason) {
		items = append(items, "reason: "+planMDText(strings.Join(planLines(res.Reason), " / ")))
	}
	if res.Previous != "" {
		items = append(items, "previous: "+planMDCode(res.Previous))
	}
	if res.New != "" {
		items = append(items, "new: "+planMDCode(res.New))
	}
	if res.Current != "" && res.Current != res.New && res.Current != res.Previous {
		items = append(items, "now on: "+planMDCode(res.Current))
	}
	if r := rebootText(res.RebootFor); r != "" {
		items = append(items, "**"+r+"**")
	}
	if res.Status == deploy.StatusUncertain {
		items = append(items, "check the node with "+planMDCode("tether status")+" before deploying again")
	}
	if len(res.Profiles) > 1 {
		for _, p := range res.Profiles {
			s := "profile " + planMDCode(p.Profile) + ": " + planMDText(string(p.Status))
			if p.Generation > 0 {
				s += fmt.Sprintf(", generation %d", p.Generation)
			}
			if p.Error != "" {
				s += ": " + planMDText(strings.Join(planLines(p.Error), " / "))
			}
			items = append(items, s)
		}
	}
	if c := res.Copied; c.Present > 0 || c.Substituted > 0 {
		items = append(items, fmt.Sprintf("copy: %d path%s sent (%s), %d already present, %d substituted by the node",
			c.Paths, planPlural(c.Paths), planBytes(c.Bytes), c.Present, c.Substituted))
	}
	if ph := deployPhases(res.Timings, " · "); ph != "" {
		items = append(items, "time: "+ph)
	}
	if res.DeployID != "" {
		items = append(items, "deploy id: "+planMDCode(res.DeployID))
	}
	for _, it := range items {
		b.WriteString("- " + it + "\n")
	}
	if len(items) > 0 {
		b.WriteString("\n")
	}
	if lines := planLines(res.Error); len(lines) > 0 {
		lines = d.shorten(lines)
		run := 0
		for _, l := range lines {
			run = max(run, planLongestRun(l, '`'))
		}
		fence := strings.Repeat("`", max(3, run+1))
		b.WriteString(fence + "text\n" + strings.Join(lines, "\n") + "\n" + fence + "\n\n")
	}
	b.WriteString("</details>\n\n")
}

// shorten keeps an error's first line and its last lines, within the
// current budget, and says how many it left out.
func (d *deployMD) shorten(lines []string) []string {
	n := d.errLines
	if n < 0 || len(lines) <= n {
		return lines
	}
	out := []string{lines[0]}
	tail := n - 1
	out = append(out, fmt.Sprintf("… %d line%s not shown", len(lines)-n, planPlural(len(lines)-n)))
	return append(out, lines[len(lines)-tail:]...)
}
