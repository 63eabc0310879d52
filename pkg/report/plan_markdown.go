package report

import (
	"fmt"
	"html"
	"net/url"
	"sort"
	"strings"

	"github.com/tetherdeploy/tether/pkg/plan"
)

// DefaultCommentLimit is the longest body GitHub accepts for an issue or
// pull request comment.
const DefaultCommentLimit = 65536

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
// The result never exceeds the limit. When the full rendering is too long,
// the longest sections (package tables, unit lists, output and error
// lines) are shortened first, each saying how much it lost, and a note at
// the top says the plan was shortened. Only if that is not enough are
// whole node blocks, then table rows, left out.
//
// Every name that comes from a node, a store path or a target's output is
// escaped so that it stays text: it cannot end a table cell, open a link,
// inject HTML or mention a user.
func PlanMarkdown(p *plan.Plan, opts PlanMarkdownOptions) string {
	if opts.Limit <= 0 {
		opts.Limit = DefaultCommentLimit
	}
	if opts.Title == "" {
		opts.Title = "tether plan"
	}
	doc := planMarkdownDoc(p, opts)
	return doc.fit(opts.Limit)
}

// mdSection is a run of items (table rows, units, output lines) between a
// fixed head and tail that may be shortened from the end.
type mdSection struct {
	head, tail string
	sep        string
	items      []string
	// note says how many items were cut; it is placed before the tail
	// when noteInside is set (inline lists), after it otherwise (tables,
	// code blocks, which must be closed first).
	note       func(cut, kept int) string
	noteInside bool

	keep   int
	prefix []int // prefix[k] = bytes of items[:k] joined by sep
}

func newSection(head string, items []string, sep, tail string, note func(cut, kept int) string, noteInside bool) *mdSection {
	s := &mdSection{head: head, tail: tail, sep: sep, items: items, note: note, noteInside: noteInside, keep: len(items)}
	s.prefix = make([]int, len(items)+1)
	for i, it := range items {
		s.prefix[i+1] = s.prefix[i] + len(it)
		if i > 0 {
			s.prefix[i+1] += len(sep)
		}
	}
	return s
}

func (s *mdSection) size(k int) int {
	n := len(s.head) + len(s.tail) + s.prefix[k]
	if k < len(s.items) {
		n += len(s.note(len(s.items)-k, k))
	}
	return n
}

// keepFor is the most items the section keeps when no section may be
// longer than limit bytes: all of them if it already fits, otherwise as
// many as fit under the cap, possibly none.
func (s *mdSection) keepFor(limit int) int {
	n := len(s.items)
	if s.size(n) <= limit {
		return n
	}
	// size(k) grows with k: every item is longer than the digits its
	// cut note loses, so the answer can be searched for.
	return sort.Search(n, func(k int) bool { return s.size(k+1) > limit })
}

func (s *mdSection) render(b *strings.Builder) {
	b.WriteString(s.head)
	for i, it := range s.items[:s.keep] {
		if i > 0 {
			b.WriteString(s.sep)
		}
		b.WriteString(it)
	}
	cut := len(s.items) - s.keep
	if cut > 0 && s.noteInside {
		b.WriteString(s.note(cut, s.keep))
	}
	b.WriteString(s.tail)
	if cut > 0 && !s.noteInside {
		b.WriteString(s.note(cut, s.keep))
	}
}

// mdPart is fixed text or a section.
type mdPart struct {
	text string
	sec  *mdSection
}

// mdBlock is one node's <details> block.
type mdBlock struct {
	parts   []mdPart
	dropped bool
}

func (bl *mdBlock) size() int {
	n := 0
	for _, p := range bl.parts {
		if p.sec != nil {
			n += p.sec.size(p.sec.keep)
		} else {
			n += len(p.text)
		}
	}
	return n
}

type mdDoc struct {
	limitText   string // the limit as shown in the note
	fullPlanURL string
	head        string
	tableHead   string
	rows        []string
	rowsKept    int
	blocks      []*mdBlock
	nodeNames   []string // per block, for the dropped-details line
}

// dropped-block line, shown instead of a block left out entirely.
func (d *mdDoc) droppedLine(i int) string {
	return fmt.Sprintf("<details><summary>%s: details left out to fit the comment limit</summary></details>\n\n", planHTMLCode(d.nodeNames[i]))
}

func (d *mdDoc) sections() []*mdSection {
	var out []*mdSection
	for _, bl := range d.blocks {
		if bl.dropped {
			continue
		}
		for _, p := range bl.parts {
			if p.sec != nil {
				out = append(out, p.sec)
			}
		}
	}
	return out
}

// note is the shortening notice for the given amounts cut.
func (d *mdDoc) note(linesCut, blocksDropped, rowsCut int) string {
	if linesCut == 0 && blocksDropped == 0 && rowsCut == 0 {
		return ""
	}
	var what []string
	if linesCut > 0 {
		what = append(what, fmt.Sprintf("%d entr%s cut from the longest sections, as marked", linesCut, planPluralY(linesCut)))
	}
	if blocksDropped > 0 {
		what = append(what, fmt.Sprintf("details of %d node%s left out", blocksDropped, planPlural(blocksDropped)))
	}
	if rowsCut > 0 {
		what = append(what, fmt.Sprintf("%d node%s left out of the table", rowsCut, planPlural(rowsCut)))
	}
	s := fmt.Sprintf("> [!NOTE]\n> This plan was shortened to fit the %s-character comment limit: %s.", d.limitText, strings.Join(what, "; "))
	if d.fullPlanURL != "" {
		s += fmt.Sprintf(" The full plan is in the [job summary](%s).", d.fullPlanURL)
	}
	return s + "\n\n"
}

// cutCounts reports how much the current keeps leave out.
func (d *mdDoc) cutCounts() (lines, blocks, rows int) {
	for _, bl := range d.blocks {
		if bl.dropped {
			blocks++
			continue
		}
		for _, p := range bl.parts {
			if p.sec != nil {
				lines += len(p.sec.items) - p.sec.keep
			}
		}
	}
	return lines, blocks, len(d.rows) - d.rowsKept
}

func (d *mdDoc) moreRowsLine(cut int) string {
	return fmt.Sprintf("| … %d more node%s |\n", cut, planPlural(cut))
}

func (d *mdDoc) render() string {
	var b strings.Builder
	b.WriteString(d.head)
	b.WriteString(d.note(d.cutCounts()))
	b.WriteString(d.tableHead)
	for _, r := range d.rows[:d.rowsKept] {
		b.WriteString(r)
	}
	if cut := len(d.rows) - d.rowsKept; cut > 0 {
		b.WriteString(d.moreRowsLine(cut))
	}
	b.WriteString("\n")
	for i, bl := range d.blocks {
		if bl.dropped {
			b.WriteString(d.droppedLine(i))
			continue
		}
		for _, p := range bl.parts {
			if p.sec != nil {
				p.sec.render(&b)
			} else {
				b.WriteString(p.text)
			}
		}
	}
	return b.String()
}

// size is len(render()) without building the string, with the note sized
// for the worst case so that it can never push the result over.
func (d *mdDoc) size(noteReserve int) int {
	n := len(d.head) + noteReserve + len(d.tableHead) + 1
	for _, r := range d.rows[:d.rowsKept] {
		n += len(r)
	}
	if cut := len(d.rows) - d.rowsKept; cut > 0 {
		n += len(d.moreRowsLine(cut))
	}
	for i, bl := range d.blocks {
		if bl.dropped {
			n += len(d.droppedLine(i))
		} else {
			n += bl.size()
		}
	}
	return n
}

// fit shortens the document until it renders within limit bytes.
func (d *mdDoc) fit(limit int) string {
	if out := d.render(); len(out) <= limit {
		return out
	}
	totalItems := 0
	for _, s := range d.sections() {
		totalItems += len(s.items)
	}
	reserve := len(d.note(max(totalItems, 1), max(len(d.blocks), 1), max(len(d.rows), 1)))

	// 1. Water-fill: find the largest cap such that shortening every
	// section to at most cap bytes fits; the longest sections lose first.
	// 2. If even empty sections do not fit, leave out whole node blocks,
	// largest first, and try again.
	for {
		secs := d.sections()
		apply := func(c int) int {
			for _, s := range secs {
				s.keep = s.keepFor(c)
			}
			return d.size(reserve)
		}
		hi := 0
		for _, s := range secs {
			hi = max(hi, s.size(len(s.items)))
		}
		if apply(0) <= limit {
			lo := 0 // apply(lo) fits
			for lo < hi {
				mid := lo + (hi-lo+1)/2
				if apply(mid) <= limit {
					lo = mid
				} else {
					hi = mid - 1
				}
			}
			apply(lo)
			break
		}
		big := -1
		for i, bl := range d.blocks {
			if !bl.dropped && (big < 0 || bl.size() > d.blocks[big].size()) {
				big = i
			}
		}
		if big < 0 {
			break
		}
		d.blocks[big].dropped = true
		for _, s := range secs {
			s.keep = len(s.items)
		}
	}
	// 3. Leave out table rows from the end.
	for d.rowsKept > 0 && d.size(reserve) > limit {
		d.rowsKept--
	}
	out := d.render()
	if len(out) > limit {
		// 4. A limit too small for even the heading: cut at a line end.
		out = planClip(out, limit)
	}
	return out
}

// planClip cuts s to at most limit bytes, at the last line end that fits.
func planClip(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	s = s[:limit]
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[:i+1]
	}
	return ""
}

func planMarkdownDoc(p *plan.Plan, opts PlanMarkdownOptions) *mdDoc {
	d := &mdDoc{limitText: planThousands(opts.Limit), fullPlanURL: planSafeURL(opts.FullPlanURL)}

	var h strings.Builder
	fmt.Fprintf(&h, "### %s\n\n", planMDText(opts.Title))
	fmt.Fprintf(&h, "Flake %s", planMDCode(p.FlakeRef))
	if p.Commit != "" {
		fmt.Fprintf(&h, " at %s", planMDCode(p.Commit))
	}
	fmt.Fprintf(&h, " · %d node%s", len(p.Nodes), planPlural(len(p.Nodes)))
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
			d.nodeNames = append(d.nodeNames, n.Node)
		}
	}
	d.rowsKept = len(d.rows)
	return d
}

func planMDRow(n *plan.NodePlan, withDry bool) string {
	cells := []string{planMDCode(n.Node), planStatusText(n.Status)}
	if n.Diff != nil && n.Status != plan.StatusUnreachable && n.Status != plan.StatusError {
		d := n.Diff
		cells = append(cells,
			fmt.Sprint(d.Count(plan.Upgraded)), fmt.Sprint(d.Count(plan.Downgraded)),
			fmt.Sprint(d.Count(plan.Added)), fmt.Sprint(d.Count(plan.Removed)),
			planDelta(d.BytesDelta()))
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
		parts = append(parts, planMDCode(u))
	}
	s := strings.Join(parts, ", ")
	if len(units) > shown {
		s += fmt.Sprintf(" +%d more", len(units)-shown)
	}
	return s
}

// planMDBlock is a node's <details> block, or nil when there is nothing
// to show beyond its table row.
func planMDBlock(n *plan.NodePlan) *mdBlock {
	if n.Status == plan.StatusNoChanges && n.DryActivate == nil {
		return nil
	}
	bl := &mdBlock{}
	add := func(s string) { bl.parts = append(bl.parts, mdPart{text: s}) }
	addSec := func(s *mdSection) { bl.parts = append(bl.parts, mdPart{sec: s}) }

	summary := planStatusText(n.Status)
	if n.Diff != nil && (n.Status == plan.StatusOK || n.Status == plan.StatusFresh) {
		if c := planCounts(n.Diff); c != "" {
			summary += ": " + c
		}
		summary += " · " + planDelta(n.Diff.BytesDelta())
		if len(n.RebootFor) > 0 {
			summary += " · needs a reboot"
		}
	}
	add(fmt.Sprintf("<details><summary>%s · %s</summary>\n\n", planHTMLCode(n.Node), html.EscapeString(summary)))

	switch n.Status {
	case plan.StatusUnreachable, plan.StatusError, plan.StatusNotQueried:
		if n.Error != "" {
			addSec(planMDCodeBlock("", planLines(n.Error), "line"))
		}
		if n.NewSystem != "" {
			add(fmt.Sprintf("- new: %s\n\n", planMDCode(n.NewSystem)))
		}
		add("</details>\n\n")
		return bl
	case plan.StatusFresh:
		add("No current system: everything is new.\n\n")
	}

	if n.CurrentSystem != "" || n.NewSystem != "" {
		if n.CurrentSystem != "" {
			add(fmt.Sprintf("- current: %s\n", planMDCode(n.CurrentSystem)))
		}
		if n.NewSystem != "" && n.NewSystem != n.CurrentSystem {
			add(fmt.Sprintf("- new: %s\n", planMDCode(n.NewSystem)))
		}
		if r := rebootText(n.RebootFor); r != "" {
			add("- **" + r + "**\n")
		}
		add("\n")
	}
	if d := n.Diff; d != nil {
		line := "Closure: " + planClosureLine(d)
		if d.Rebuilt > 0 {
			line += fmt.Sprintf("; %d rebuilt with the same version", d.Rebuilt)
		}
		add(line + "\n\n")
		if len(d.Packages) > 0 {
			var rows []string
			for _, k := range plan.Kinds {
				for _, p := range d.Of(k) {
					rows = append(rows, planMDPackageRow(p))
				}
			}
			// The note needs a blank line before it: a line right
			// after a table would become one of its rows.
			addSec(newSection("| | Package | Before | After | Size Δ |\n|:-:|:--|:--|:--|--:|\n", rows, "\n", "\n",
				func(cut, _ int) string { return "\n" + strings.TrimSuffix(planMDCutNote(cut, "package"), "\n") }, false))
			add("\n")
		}
	}
	if da := n.DryActivate; da != nil {
		planMDDry(da, add, addSec)
	}
	add("</details>\n\n")
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
				parts = append(parts, planMDCode(v))
			}
		}
		s := strings.Join(parts, ", ")
		if len(vs) > shown {
			s += fmt.Sprintf(" and %d more", len(vs)-shown)
		}
		return s
	}
	return fmt.Sprintf("| %s | %s | %s | %s | %s |", planKindLetter[p.Kind], planMDCode(p.Name), versions(p.Before), versions(p.After), planDelta(p.SizeDelta))
}

func planMDDry(d *plan.DryActivate, add func(string), addSec func(*mdSection)) {
	add("**dry-activate**\n\n")
	if d.Error != "" {
		add("Dry activation failed:\n\n")
		addSec(planMDCodeBlock("", planLines(d.Error), "line"))
	}
	if d.Empty() {
		add("Nothing would be stopped, started, reloaded or restarted.\n\n")
		return
	}
	bullets := false
	if d.RebootRequired {
		add("- **reboot required**: the new init is incompatible with the running one\n")
		bullets = true
	}
	if d.RestartSystemd {
		add("- would restart **systemd**\n")
		bullets = true
	}
	for _, l := range planDryLists(d) {
		if len(l.units) == 0 {
			continue
		}
		bullets = true
		items := make([]string, len(l.units))
		for i, u := range l.units {
			items[i] = planMDCode(u)
		}
		what := "unit"
		if l.label == "stop swap" {
			what = "device"
		}
		addSec(newSection("- would "+l.label+": ", items, ", ", "\n", func(cut, kept int) string {
			if kept == 0 {
				return fmt.Sprintf("%d %s%s, not shown", cut, what, planPlural(cut))
			}
			return fmt.Sprintf(" and %d more", cut)
		}, true))
	}
	if bullets {
		add("\n")
	}
	if len(d.Other) > 0 {
		add("Other output:\n\n")
		lines := make([]string, len(d.Other))
		for i, l := range d.Other {
			lines[i] = planClean(l)
		}
		addSec(planMDCodeBlock("text", lines, "line"))
	}
}

// planMDCodeBlock is a fenced code block of already cleaned lines, its
// fence longer than any backtick run inside so no line can close it.
func planMDCodeBlock(info string, lines []string, what string) *mdSection {
	run := 0
	for _, l := range lines {
		run = max(run, planLongestRun(l, '`'))
	}
	fence := strings.Repeat("`", max(3, run+1))
	return newSection(fence+info+"\n", lines, "\n", "\n"+fence+"\n\n",
		func(cut, _ int) string { return planMDCutNote(cut, what) }, false)
}

func planMDCutNote(cut int, what string) string {
	return fmt.Sprintf("_… %d more %s%s not shown._\n\n", cut, what, planPlural(cut))
}

// planMDText escapes text for Markdown outside code: every character that
// could start emphasis, a link, HTML, an entity, math, a table cell
// boundary or strikethrough is backslash-escaped, after control characters
// are neutralised by planClean. Inside a table cell the GFM table parser
// pairs each backslash with the next character, so an escaped "\|" can
// never end the cell.
func planMDText(s string) string {
	s = planClean(s)
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune("\\`*_[]()<>|~$&!#{}", r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// planMDCode shows s as code in Markdown: an HTML <code> element around
// escaped text. Unlike a backtick span it survives any backticks and pipes
// in s, and text inside code is never turned into @mentions or links.
func planMDCode(s string) string {
	if s == "" {
		return "<code></code>"
	}
	return "<code>" + planMDText(s) + "</code>"
}

// planHTMLCode shows s as code inside raw HTML (a <summary>), where
// Markdown is not parsed and HTML escaping is what applies.
func planHTMLCode(s string) string {
	return "<code>" + html.EscapeString(planClean(s)) + "</code>"
}

func planLongestRun(s string, c rune) int {
	best, cur := 0, 0
	for _, r := range s {
		if r == c {
			cur++
			best = max(best, cur)
		} else {
			cur = 0
		}
	}
	return best
}

// planSafeURL returns u when it is an absolute http(s) URL, escaped so
// that it cannot end a Markdown link early, and "" otherwise.
func planSafeURL(u string) string {
	parsed, err := url.Parse(strings.TrimSpace(u))
	if err != nil || (parsed.Scheme != "https" && parsed.Scheme != "http") || parsed.Host == "" {
		return ""
	}
	s := parsed.String()
	r := strings.NewReplacer("(", "%28", ")", "%29", "<", "%3C", ">", "%3E", " ", "%20", "\\", "%5C", "`", "%60")
	return r.Replace(s)
}

func planPluralY(n int) string {
	if n == 1 {
		return "y"
	}
	return "ies"
}

// planThousands formats n with comma separators: 65,536.
func planThousands(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
