package report

import (
	"fmt"
	"sort"
	"strings"
)

// The one shortening strategy of every Markdown rendering (plans, deploy
// reports, failures): a document is fixed text, a table with one row per
// node, and one block per node made of fixed text and sections (package
// tables, unit lists, output and error lines). When it does not fit:
//
//  1. the longest sections lose entries first, each saying how many it
//     lost (water-filling: every section is cut to at most the same
//     size, the largest size that fits);
//  2. if even empty sections do not fit, whole node blocks are left out,
//     from the end (the table still lists every node), and one line
//     after the last block kept says how many;
//  3. then table rows, from the end;
//  4. and a limit too small for even the heading cuts at a line end.
//
// A note at the top says what was left out, and links the full rendering
// when there is one.

// notePlace is where a section says how much it lost.
type notePlace int

const (
	// noteAfter: after the tail, for blocks that must be closed first
	// (a table, a code block). The entries kept are the first ones.
	noteAfter notePlace = iota
	// noteInside: before the tail, for an inline list.
	noteInside
	// noteMiddle: as an entry between the first entry and the last ones,
	// for logs, whose first line names what failed and whose last lines
	// say why.
	noteMiddle
)

// section is a run of entries between a fixed head and tail that may be
// shortened.
type section struct {
	head, tail, sep string
	items           []string
	note            func(cut, kept int) string
	place           notePlace
	// least is how many entries the section keeps before whole blocks
	// are left out: an error log without its first and last lines says
	// nothing.
	least int

	keep int
	sums []int // sums[k] = bytes of items[:k], separators not counted
}

func newSection(head string, items []string, sep, tail string, place notePlace, note func(cut, kept int) string) *section {
	s := &section{head: head, tail: tail, sep: sep, items: items, note: note, place: place, keep: len(items)}
	s.sums = make([]int, len(items)+1)
	for i, it := range items {
		s.sums[i+1] = s.sums[i] + len(it)
	}
	return s
}

// pieces are the entries written when k are kept, the note included when
// it goes between them.
func (s *section) pieces(k int) []string {
	n := len(s.items)
	switch {
	case k >= n:
		return s.items
	case s.place != noteMiddle:
		return s.items[:k]
	case k == 0:
		return []string{s.note(n, 0)}
	}
	out := append([]string{s.items[0], s.note(n-k, k)}, s.items[n-k+1:]...)
	return out
}

// size is the bytes the section takes when k entries are kept.
func (s *section) size(k int) int {
	n := len(s.items)
	k = min(k, n)
	size := len(s.head) + len(s.tail)
	count := k
	switch {
	case s.place != noteMiddle || k == n:
		size += s.sums[k]
	case k == 0:
		count = 1
	default:
		count = k + 1
		size += s.sums[1] + s.sums[n] - s.sums[n-k+1]
	}
	if count > 1 {
		size += (count - 1) * len(s.sep)
	}
	if k < n {
		size += len(s.note(n-k, k))
	}
	return size
}

// keepFor is the most entries the section keeps when no section may be
// longer than limit bytes: all of them if it already fits, otherwise as
// many as fit under the cap, possibly none.
func (s *section) keepFor(limit int) int {
	n := len(s.items)
	if s.size(n) <= limit {
		return n
	}
	// size(k) does not shrink as k grows: an entry and its separator are
	// never shorter than the digits its cut note loses.
	return max(min(s.least, n), sort.Search(n, func(k int) bool { return s.size(k+1) > limit }))
}

func (s *section) render(b *strings.Builder) {
	b.WriteString(s.head)
	b.WriteString(strings.Join(s.pieces(s.keep), s.sep))
	cut := len(s.items) - s.keep
	if cut > 0 && s.place == noteInside {
		b.WriteString(s.note(cut, s.keep))
	}
	b.WriteString(s.tail)
	if cut > 0 && s.place == noteAfter {
		b.WriteString(s.note(cut, s.keep))
	}
}

// codeSection is a fenced code block of cleaned lines, shortened as place
// says; what names an entry in the note ("line"). A log (noteMiddle)
// keeps at least its first line and its last two.
func codeSection(info string, lines []string, what string, place notePlace) *section {
	fence := codeFence(lines)
	note := func(cut, _ int) string { return cutNote(cut, what) }
	if place == noteMiddle {
		note = func(cut, _ int) string { return fmt.Sprintf("… %d %s%s not shown", cut, what, plural(cut)) }
	}
	s := newSection(fence+info+"\n", lines, "\n", "\n"+fence+"\n\n", place, note)
	if place == noteMiddle {
		s.least = 3
	}
	return s
}

// cutNote is the line after a shortened table or code block.
func cutNote(cut int, what string) string {
	return fmt.Sprintf("_… %d more %s%s not shown._\n\n", cut, what, plural(cut))
}

// part is fixed text or a section.
type part struct {
	text string
	sec  *section
}

// block is one node's <details> block.
type block struct {
	parts   []part
	dropped bool
}

func (bl *block) add(s string)      { bl.parts = append(bl.parts, part{text: s}) }
func (bl *block) addSec(s *section) { bl.parts = append(bl.parts, part{sec: s}) }
func (bl *block) render(b *strings.Builder) {
	for _, p := range bl.parts {
		if p.sec != nil {
			p.sec.render(b)
		} else {
			b.WriteString(p.text)
		}
	}
}

func (bl *block) size() int {
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

// doc is a whole rendering: head, the shortening note, a preface, the
// table, the node blocks and a tail.
type doc struct {
	noun      string // what was shortened: "plan", "report"
	limit     int    // the most bytes the rendering may have
	limitText string // the limit as the note shows it
	fullURL   string // where the full rendering is; "" for nowhere
	head      string
	preface   string
	tableHead string // "" for no table
	rows      []string
	rowsKept  int
	blocks    []*block
	tail      string
}

// newDoc starts a rendering of what noun names within limit bytes (0 or
// less means DefaultCommentLimit), linking fullURL from the shortening
// note when it is a URL tether may link (see safeURL). Every Markdown
// renderer starts here, so they all read a limit and link the full
// rendering the same way.
func newDoc(noun string, limit int, fullURL string) *doc {
	if limit <= 0 {
		limit = DefaultCommentLimit
	}
	return &doc{noun: noun, limit: limit, limitText: thousands(limit), fullURL: safeURL(fullURL)}
}

// droppedLine says how many blocks were left out, "" for none.
func (d *doc) droppedLine() string {
	n := 0
	for _, bl := range d.blocks {
		if bl.dropped {
			n++
		}
	}
	if n == 0 {
		return ""
	}
	more := ""
	if n < len(d.blocks) {
		more = " more"
	}
	return fmt.Sprintf("_Details of %d%s node%s left out to fit the limit._\n\n", n, more, plural(n))
}

func (d *doc) sections() []*section {
	var out []*section
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
func (d *doc) note(linesCut, blocksDropped, rowsCut int) string {
	if linesCut == 0 && blocksDropped == 0 && rowsCut == 0 {
		return ""
	}
	var what []string
	if linesCut > 0 {
		what = append(what, fmt.Sprintf("%d entr%s cut from the longest sections, as marked", linesCut, pluralY(linesCut)))
	}
	if blocksDropped > 0 {
		what = append(what, fmt.Sprintf("details of %d node%s left out", blocksDropped, plural(blocksDropped)))
	}
	if rowsCut > 0 {
		what = append(what, fmt.Sprintf("%d node%s left out of the table", rowsCut, plural(rowsCut)))
	}
	s := fmt.Sprintf("> [!NOTE]\n> This %s was shortened to fit the %s-character comment limit: %s.", d.noun, d.limitText, strings.Join(what, "; "))
	if d.fullURL != "" {
		s += fmt.Sprintf(" The full %s is in the [job summary](%s).", d.noun, d.fullURL)
	}
	return s + "\n\n"
}

// cutCounts reports how much the current keeps leave out.
func (d *doc) cutCounts() (lines, blocks, rows int) {
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

func moreRowsLine(cut int) string {
	return fmt.Sprintf("| … %d more node%s |\n", cut, plural(cut))
}

func (d *doc) render() string {
	var b strings.Builder
	b.WriteString(d.head)
	b.WriteString(d.note(d.cutCounts()))
	b.WriteString(d.preface)
	if d.tableHead != "" {
		b.WriteString(d.tableHead)
		for _, r := range d.rows[:d.rowsKept] {
			b.WriteString(r)
		}
		if cut := len(d.rows) - d.rowsKept; cut > 0 {
			b.WriteString(moreRowsLine(cut))
		}
		b.WriteString("\n")
	}
	for _, bl := range d.blocks {
		if !bl.dropped {
			bl.render(&b)
		}
	}
	b.WriteString(d.droppedLine())
	b.WriteString(d.tail)
	return b.String()
}

// size is len(render()) without building the string, with the note sized
// for the worst case so that it can never push the result over.
func (d *doc) size(noteReserve int) int {
	n := len(d.head) + noteReserve + len(d.preface) + len(d.tail)
	if d.tableHead != "" {
		n += len(d.tableHead) + 1
		for _, r := range d.rows[:d.rowsKept] {
			n += len(r)
		}
		if cut := len(d.rows) - d.rowsKept; cut > 0 {
			n += len(moreRowsLine(cut))
		}
	}
	for _, bl := range d.blocks {
		if !bl.dropped {
			n += bl.size()
		}
	}
	return n + len(d.droppedLine())
}

// fit shortens the document until it renders within its limit.
func (d *doc) fit() string {
	limit := d.limit
	d.rowsKept = len(d.rows)
	if out := d.render(); len(out) <= limit {
		return out
	}
	totalItems := 0
	for _, s := range d.sections() {
		totalItems += len(s.items)
	}
	reserve := len(d.note(max(totalItems, 1), max(len(d.blocks), 1), max(len(d.rows), 1)))

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
			// 1. The largest cap that fits.
			lo := 0
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
		// 2. Leave out the last block kept and try again.
		last := -1
		for i, bl := range d.blocks {
			if !bl.dropped {
				last = i
			}
		}
		if last < 0 {
			break
		}
		d.blocks[last].dropped = true
		for _, s := range secs {
			s.keep = len(s.items)
		}
	}
	// 3. Table rows from the end.
	for d.rowsKept > 0 && d.size(reserve) > limit {
		d.rowsKept--
	}
	// 4. Cut at a line end.
	return Clip(d.render(), limit)
}
