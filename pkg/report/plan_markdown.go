package report

import (
	"fmt"
	"strings"

	"github.com/tetherdeploy/tether/pkg/plan"
)

// PlanMarkdownOptions shapes the Markdown rendering of a plan.
type PlanMarkdownOptions struct {
	// Title is the heading; "" means "tether plan".
	Title string
	// Limit is the most bytes the result may have; 0 means
	// DefaultCommentLimit. Bytes are never fewer than characters, so a
	// byte limit is safe for a character limit. Callers that add their
	// own text (a hidden marker) subtract its length first.
	Limit int
	// FullPlanURL, when set, is linked from the note that says the plan
	// was shortened ("full plan in the job summary").
	FullPlanURL string
}

// PlanMarkdown renders a plan as a pull request comment body: a heading,
// a summary table with one row per node, then one <details> block per node
// with the package changes, closure totals and dry-activate results.
//
// The result never exceeds the limit: it is shortened as every rendering
// here is (see doc.fit), longest sections first, and a note at the top
// says so. Every name that comes from a node, a store path or a target's
// output is escaped so that it stays text: it cannot end a table cell,
// open a link, inject HTML or mention a user.
func PlanMarkdown(p *plan.Plan, opts PlanMarkdownOptions) string {
	if opts.Title == "" {
		opts.Title = "tether plan"
	}
	return planMarkdownDoc(p, opts).fit()
}

func planMarkdownDoc(p *plan.Plan, opts PlanMarkdownOptions) *doc {
	d := newDoc("plan", opts.Limit, opts.FullPlanURL)

	var h strings.Builder
	fmt.Fprintf(&h, "### %s\n\n", MarkdownText(opts.Title))
	fmt.Fprintf(&h, "Flake %s", mdCode(p.FlakeRef))
	if p.Commit != "" {
		fmt.Fprintf(&h, " at %s", mdCode(p.Commit))
	}
	fmt.Fprintf(&h, " · %d node%s", len(p.Nodes), plural(len(p.Nodes)))
	if !p.Generated.IsZero() {
		fmt.Fprintf(&h, " · %s", p.Generated.UTC().Format("2006-01-02 15:04 UTC"))
	}
	h.WriteString("\n\n")
	d.head = h.String()

	withDry := false
	for _, n := range p.Nodes {
		if n.DryActivate != nil {
			withDry = true
		}
	}
	d.tableHead = "| Node | Status | Upgraded | Downgraded | Added | Removed | Size Δ |"
	if withDry {
		d.tableHead += " Would restart |"
	}
	d.tableHead += "\n|:--|:--|--:|--:|--:|--:|--:|"
	if withDry {
		d.tableHead += ":--|"
	}
	d.tableHead += "\n"

	for i := range p.Nodes {
		n := &p.Nodes[i]
		d.rows = append(d.rows, planMDRow(n, withDry))
		if bl := planMDBlock(n); bl != nil {
			d.blocks = append(d.blocks, bl)
		}
	}
	return d
}

func planMDRow(n *plan.NodePlan, withDry bool) string {
	cells := []string{mdCode(n.Node), planStatusText(n.Status)}
	if n.Diff != nil && n.Status != plan.StatusUnreachable && n.Status != plan.StatusError {
		d := n.Diff
		cells = append(cells,
			fmt.Sprint(d.Count(plan.Upgraded)), fmt.Sprint(d.Count(plan.Downgraded)),
			fmt.Sprint(d.Count(plan.Added)), fmt.Sprint(d.Count(plan.Removed)),
			deltaText(d.BytesDelta()))
	} else {
		cells = append(cells, "–", "–", "–", "–", "–")
	}
	if withDry {
		cells = append(cells, planMDRestarts(n.DryActivate))
	}
	return "| " + strings.Join(cells, " | ") + " |\n"
}

// planMDRestarts is the summary table's "would restart" cell.
func planMDRestarts(d *plan.DryActivate) string {
	const shown = 3
	switch {
	case d == nil:
		return "not run"
	case d.Error != "":
		return "dry-activate failed"
	case d.RebootRequired:
		return "reboot required"
	}
	var units []string
	if d.RestartSystemd {
		units = append(units, "systemd")
	}
	units = append(units, d.Restart...)
	if len(units) == 0 {
		return "none"
	}
	var parts []string
	for _, u := range units[:min(len(units), shown)] {
		parts = append(parts, mdCode(u))
	}
	s := strings.Join(parts, ", ")
	if len(units) > shown {
		s += fmt.Sprintf(" +%d more", len(units)-shown)
	}
	return s
}

// planMDBlock is a node's <details> block, or nil when there is nothing
// to show beyond its table row.
func planMDBlock(n *plan.NodePlan) *block {
	if n.Status == plan.StatusNoChanges && n.DryActivate == nil {
		return nil
	}
	bl := &block{}

	summary := planStatusText(n.Status)
	if n.Diff != nil && (n.Status == plan.StatusOK || n.Status == plan.StatusFresh) {
		if c := planCounts(n.Diff); c != "" {
			summary += ": " + c
		}
		summary += " · " + deltaText(n.Diff.BytesDelta())
		if len(n.RebootFor) > 0 {
			summary += " · needs a reboot"
		}
	}
	bl.add(fmt.Sprintf("<details><summary>%s · %s</summary>\n\n", htmlCode(n.Node), htmlText(summary)))

	switch n.Status {
	case plan.StatusUnreachable, plan.StatusError, plan.StatusNotQueried:
		if n.Error != "" {
			bl.addSec(codeSection("", cleanLines(n.Error), "line", noteMiddle))
		}
		if n.NewSystem != "" {
			bl.add(fmt.Sprintf("- new: %s\n\n", mdCode(n.NewSystem)))
		}
		bl.add("</details>\n\n")
		return bl
	case plan.StatusFresh:
		bl.add("No current system: everything is new.\n\n")
	}

	if n.CurrentSystem != "" || n.NewSystem != "" {
		if n.CurrentSystem != "" {
			bl.add(fmt.Sprintf("- current: %s\n", mdCode(n.CurrentSystem)))
		}
		if n.NewSystem != "" && n.NewSystem != n.CurrentSystem {
			bl.add(fmt.Sprintf("- new: %s\n", mdCode(n.NewSystem)))
		}
		if r := rebootText(n.RebootFor); r != "" {
			bl.add("- **" + r + "**\n")
		}
		bl.add("\n")
	}
	if d := n.Diff; d != nil {
		line := "Closure: " + planClosureLine(d)
		if d.Rebuilt > 0 {
			line += fmt.Sprintf("; %d rebuilt with the same version", d.Rebuilt)
		}
		bl.add(line + "\n\n")
		if len(d.Packages) > 0 {
			var rows []string
			for _, k := range plan.Kinds {
				for _, p := range d.Of(k) {
					rows = append(rows, planMDPackageRow(p))
				}
			}
			// The note needs a blank line before it: a line right
			// after a table would become one of its rows.
			bl.addSec(newSection("| | Package | Before | After | Size Δ |\n|:-:|:--|:--|:--|--:|\n", rows, "\n", "\n", noteAfter,
				func(cut, _ int) string { return "\n" + strings.TrimSuffix(cutNote(cut, "package"), "\n") }))
			bl.add("\n")
		}
	}
	if da := n.DryActivate; da != nil {
		planMDDry(da, bl)
	}
	bl.add("</details>\n\n")
	return bl
}

func planMDPackageRow(p plan.Package) string {
	// A package with dozens of versions would make one row too long to
	// shorten; show the oldest few and count the rest.
	const shown = 6
	versions := func(vs []string) string {
		var parts []string
		for _, v := range vs[:min(len(vs), shown)] {
			if v == "" {
				parts = append(parts, "(none)")
			} else {
				parts = append(parts, mdCode(v))
			}
		}
		s := strings.Join(parts, ", ")
		if len(vs) > shown {
			s += fmt.Sprintf(" and %d more", len(vs)-shown)
		}
		return s
	}
	return fmt.Sprintf("| %s | %s | %s | %s | %s |", planKindLetter[p.Kind], mdCode(p.Name), versions(p.Before), versions(p.After), deltaText(p.SizeDelta))
}

func planMDDry(d *plan.DryActivate, bl *block) {
	bl.add("**dry-activate**\n\n")
	if d.Error != "" {
		bl.add("Dry activation failed:\n\n")
		bl.addSec(codeSection("", cleanLines(d.Error), "line", noteMiddle))
	}
	if d.Empty() {
		bl.add("Nothing would be stopped, started, reloaded or restarted.\n\n")
		return
	}
	bullets := false
	if d.RebootRequired {
		bl.add("- **reboot required**: the new init is incompatible with the running one\n")
		bullets = true
	}
	if d.RestartSystemd {
		bl.add("- would restart **systemd**\n")
		bullets = true
	}
	for _, l := range planDryLists(d) {
		if len(l.units) == 0 {
			continue
		}
		bullets = true
		items := make([]string, len(l.units))
		for i, u := range l.units {
			items[i] = mdCode(u)
		}
		what := "unit"
		if l.label == "stop swap" {
			what = "device"
		}
		bl.addSec(newSection("- would "+l.label+": ", items, ", ", "\n", noteInside, func(cut, kept int) string {
			if kept == 0 {
				return fmt.Sprintf("%d %s%s, not shown", cut, what, plural(cut))
			}
			return fmt.Sprintf(" and %d more", cut)
		}))
	}
	if bullets {
		bl.add("\n")
	}
	if len(d.Other) > 0 {
		bl.add("Other output:\n\n")
		lines := make([]string, len(d.Other))
		for i, l := range d.Other {
			lines[i] = clean(l)
		}
		bl.addSec(codeSection("text", lines, "line", noteAfter))
	}
}
