package report

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/tetherdeploy/tether/pkg/plan"
)

// PlanText writes a plan for a person at a terminal: a header, then per
// node a summary line, one line per changed package ("[U] openssl 3.0.13
// -> 3.0.14  +100.0 KiB"), the closure totals and, when it ran, what
// dry-activate announced. Text from targets is cleaned of control
// characters first.
func PlanText(w io.Writer, p *plan.Plan) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "plan for %s", clean(p.FlakeRef))
	if p.Commit != "" {
		fmt.Fprintf(bw, " at %s", clean(p.Commit))
	}
	if !p.Generated.IsZero() {
		fmt.Fprintf(bw, " (%s)", p.Generated.UTC().Format("2006-01-02 15:04:05 UTC"))
	}
	fmt.Fprintf(bw, ": %d node%s\n", len(p.Nodes), plural(len(p.Nodes)))
	for i := range p.Nodes {
		bw.WriteString("\n")
		planTextNode(bw, &p.Nodes[i])
	}
	return bw.Flush()
}

func planTextNode(w *bufio.Writer, n *plan.NodePlan) {
	name := clean(n.Node)
	switch n.Status {
	case plan.StatusUnreachable, plan.StatusError, plan.StatusNotQueried:
		fmt.Fprintf(w, "%s: %s\n", name, planStatusText(n.Status))
		for _, l := range cleanLines(n.Error) {
			fmt.Fprintf(w, "  %s\n", l)
		}
		if n.NewSystem != "" {
			fmt.Fprintf(w, "  new:     %s\n", clean(n.NewSystem))
		}
		return
	case plan.StatusNoChanges:
		fmt.Fprintf(w, "%s: no changes\n", name)
		if n.CurrentSystem != "" {
			fmt.Fprintf(w, "  current: %s\n", clean(n.CurrentSystem))
		}
		planTextDry(w, n.DryActivate)
		return
	}

	summary := planStatusText(n.Status)
	if n.Diff != nil {
		if c := planCounts(n.Diff); c != "" {
			summary += ": " + c
		}
		if n.Diff.Rebuilt > 0 {
			summary += fmt.Sprintf("; %d rebuilt with the same version", n.Diff.Rebuilt)
		}
	}
	fmt.Fprintf(w, "%s: %s\n", name, summary)
	if n.CurrentSystem != "" {
		fmt.Fprintf(w, "  current: %s\n", clean(n.CurrentSystem))
	}
	if n.NewSystem != "" {
		fmt.Fprintf(w, "  new:     %s\n", clean(n.NewSystem))
	}
	if r := rebootText(n.RebootFor); r != "" {
		fmt.Fprintf(w, "  %s\n", r)
	}
	if d := n.Diff; d != nil {
		planTextPackages(w, d)
		fmt.Fprintf(w, "  closure: %s\n", planClosureLine(d))
	}
	planTextDry(w, n.DryActivate)
}

func planTextPackages(w *bufio.Writer, d *plan.Diff) {
	const maxNameWidth = 32
	nameW, verW := 0, 0
	for _, p := range d.Packages {
		nameW = max(nameW, min(utf8.RuneCountInString(p.Name), maxNameWidth))
		verW = max(verW, min(utf8.RuneCountInString(planTextVersions(p)), 40))
	}
	for _, k := range plan.Kinds {
		for _, p := range d.Of(k) {
			fmt.Fprintf(w, "  [%s] %-*s  %-*s  %s\n", planKindLetter[k], nameW, clean(p.Name), verW, clean(planTextVersions(p)), deltaText(p.SizeDelta))
		}
	}
}

// planTextVersions is "3.0.13 -> 3.0.14" for a change, the one side's
// versions for an addition or removal.
func planTextVersions(p plan.Package) string {
	switch p.Kind {
	case plan.Added:
		return planVersions(p.After)
	case plan.Removed:
		return planVersions(p.Before)
	}
	return planVersions(p.Before) + " -> " + planVersions(p.After)
}

// planClosureLine is "123 paths, 45.6 MiB -> 124 paths, 46.0 MiB (+0.4 MiB)".
func planClosureLine(d *plan.Diff) string {
	return fmt.Sprintf("%d path%s, %s -> %d path%s, %s (%s)",
		d.Before.Paths, plural(d.Before.Paths), sizeText(d.Before.Bytes),
		d.After.Paths, plural(d.After.Paths), sizeText(d.After.Bytes),
		deltaText(d.BytesDelta()))
}

func planTextDry(w *bufio.Writer, d *plan.DryActivate) {
	if d == nil {
		return
	}
	w.WriteString("  dry-activate:\n")
	if d.Error != "" {
		w.WriteString("    failed:\n")
		for _, l := range cleanLines(d.Error) {
			fmt.Fprintf(w, "      %s\n", l)
		}
	}
	if d.RebootRequired {
		w.WriteString("    reboot required: the new init is incompatible with the running one\n")
	}
	if d.RestartSystemd {
		w.WriteString("    would restart systemd\n")
	}
	for _, l := range planDryLists(d) {
		if len(l.units) == 0 {
			continue
		}
		fmt.Fprintf(w, "    %-25s %s\n", "would "+l.label+":", clean(strings.Join(l.units, ", ")))
	}
	if len(d.Other) > 0 {
		w.WriteString("    output:\n")
		for _, l := range d.Other {
			fmt.Fprintf(w, "      %s\n", clean(l))
		}
	}
	if d.Empty() {
		w.WriteString("    nothing would change\n")
	}
}

// planDryList is one labelled list of units or devices.
type planDryList struct {
	label string
	units []string
}

// planDryLists lists dry-activate's announcements in the order the
// activation would carry them out.
func planDryLists(d *plan.DryActivate) []planDryList {
	return []planDryList{
		{"stop", d.Stop},
		{"not stop (changed)", d.NotStopped},
		{"stop swap", d.StopSwap},
		{"reload", d.Reload},
		{"restart", d.Restart},
		{"start", d.Start},
	}
}
