package report

import (
	"fmt"
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
// The result never exceeds the limit: it is shortened as every rendering
// here is (see doc.fit); an error keeps its first line and its last lines,
// where a build log's cause is. Every name and message is escaped so that
// it stays text.
func DeployMarkdown(r *deploy.Report, opts DeployMarkdownOptions) string {
	if opts.Title == "" {
		opts.Title = "tether " + deployVerb(r)
	}
	d := newDoc("report", opts.Limit, opts.RunURL)
	d.head = fmt.Sprintf("### %s: %s\n\n", MarkdownText(opts.Title), MarkdownText(deployHeadline(r))) + deployFacts(r, opts)
	if r.Interrupted {
		d.preface = "> [!WARNING]\n> The run was interrupted: nodes it had not reached were skipped.\n\n"
	}
	if len(r.Results) > 0 {
		d.tableHead = "| Node | Status | System | Generation | Copied | Time |\n|:--|:--|:--|--:|--:|--:|\n"
	}
	for i := range r.Results {
		res := &r.Results[i]
		d.rows = append(d.rows, deployRow(r, res))
		if deployNeedsDetails(res) {
			d.blocks = append(d.blocks, deployBlock(r, res))
		}
	}
	if d.fullURL != "" {
		d.tail = fmt.Sprintf("[Run log](%s)\n", d.fullURL)
	}
	return d.fit()
}

// deployFacts is the line under the heading: flake, commit, action,
// environment, start and run time.
func deployFacts(r *deploy.Report, opts DeployMarkdownOptions) string {
	var facts []string
	if r.Flake != "" {
		f := "Flake " + mdCode(r.Flake)
		if opts.Commit != "" {
			f += " at " + mdCode(opts.Commit)
		}
		facts = append(facts, f)
	} else if opts.Commit != "" {
		facts = append(facts, "Commit "+mdCode(opts.Commit))
	}
	if r.Action != "" && !r.Action.IsRollback() {
		facts = append(facts, "action "+mdCode(string(r.Action)))
	}
	if opts.Environment != "" {
		facts = append(facts, "environment "+mdCode(opts.Environment))
	}
	if !r.Started.IsZero() {
		facts = append(facts, r.Started.UTC().Format("2006-01-02 15:04 UTC"))
	}
	if t := deployDuration(deployRunTime(r)); t != "" {
		facts = append(facts, t)
	}
	if len(facts) == 0 {
		return ""
	}
	return strings.Join(facts, " · ") + "\n\n"
}

func deployRow(r *deploy.Report, res *deploy.Result) string {
	cells := []string{
		mdCode(res.Node),
		deployStatusIcon(res.Status) + " " + MarkdownText(deployStatusText(r, res)),
		deployDash(deployChange(res.Previous, deployTarget(res), "→", mdCode)),
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

// deployBlock is the <details> block of a node that needs more than its
// row.
func deployBlock(r *deploy.Report, res *deploy.Result) *block {
	bl := &block{}
	bl.add(fmt.Sprintf("<details><summary>%s · %s</summary>\n\n", htmlCode(res.Node), htmlText(deployStatusText(r, res))))
	var items []string
	if res.Reason != "" && !strings.Contains(res.Error, res.Reason) {
		items = append(items, "reason: "+MarkdownText(strings.Join(cleanLines(res.Reason), " / ")))
	}
	if res.Previous != "" {
		items = append(items, "previous: "+mdCode(res.Previous))
	}
	if res.New != "" {
		items = append(items, "new: "+mdCode(res.New))
	}
	if res.Current != "" && res.Current != res.New && res.Current != res.Previous {
		items = append(items, "now on: "+mdCode(res.Current))
	}
	if r := rebootText(res.RebootFor); r != "" {
		items = append(items, "**"+r+"**")
	}
	if res.Status == deploy.StatusUncertain {
		items = append(items, "check the node with "+mdCode("tether status")+" before deploying again")
	}
	if len(res.Profiles) > 1 {
		for _, p := range res.Profiles {
			s := "profile " + mdCode(p.Profile) + ": " + MarkdownText(string(p.Status))
			if p.Generation > 0 {
				s += fmt.Sprintf(", generation %d", p.Generation)
			}
			if p.Error != "" {
				s += ": " + MarkdownText(strings.Join(cleanLines(p.Error), " / "))
			}
			items = append(items, s)
		}
	}
	if c := res.Copied; c.Present > 0 || c.Substituted > 0 {
		items = append(items, fmt.Sprintf("copy: %d path%s sent (%s), %d already present, %d substituted by the node",
			c.Paths, plural(c.Paths), sizeText(c.Bytes), c.Present, c.Substituted))
	}
	if ph := deployPhases(res.Timings, " · "); ph != "" {
		items = append(items, "time: "+ph)
	}
	if res.DeployID != "" {
		items = append(items, "deploy id: "+mdCode(res.DeployID))
	}
	var list strings.Builder
	for _, it := range items {
		list.WriteString("- " + it + "\n")
	}
	if len(items) > 0 {
		list.WriteString("\n")
	}
	bl.add(list.String())
	if lines := cleanLines(res.Error); len(lines) > 0 {
		bl.addSec(codeSection("text", lines, "line", noteMiddle))
	}
	bl.add("</details>\n\n")
	return bl
}
