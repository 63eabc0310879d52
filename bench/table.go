//go:build linux

package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// table is one benchmark's figures, printed aligned on the terminal and as
// a Markdown table in RESULTS.md.
type table struct {
	header []string
	rows   [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

// text writes the table aligned in columns.
func (t *table) text(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  "+strings.Join(t.header, "\t"))
	for _, r := range t.rows {
		fmt.Fprintln(tw, "  "+strings.Join(r, "\t"))
	}
	tw.Flush()
}

// markdown writes the table in Markdown, pipes in cells escaped.
func (t *table) markdown(w io.Writer) {
	esc := func(cells []string) string {
		out := make([]string, len(cells))
		for i, c := range cells {
			out[i] = strings.ReplaceAll(c, "|", `\|`)
		}
		return "| " + strings.Join(out, " | ") + " |"
	}
	fmt.Fprintln(w, esc(t.header))
	sep := make([]string, len(t.header))
	for i := range sep {
		sep[i] = "---"
	}
	fmt.Fprintln(w, "|"+strings.Join(sep, "|")+"|")
	for _, r := range t.rows {
		fmt.Fprintln(w, esc(r))
	}
}

// median of ds; 0 for none. An even count averages the middle two.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// secs formats a duration as seconds with two decimals.
func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// millis formats a duration in whole milliseconds.
func millis(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }

// ratio formats a/b as "1.23×"; "n/a" when b is zero.
func ratio(a, b time.Duration) string {
	if b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", float64(a)/float64(b))
}

// bytesIEC formats a byte count with a binary unit.
func bytesIEC(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// percent formats part/whole as a percentage with enough digits to show
// small shares.
func percent(part, whole int64) string {
	if whole <= 0 {
		return "n/a"
	}
	p := 100 * float64(part) / float64(whole)
	switch {
	case p < 0.1:
		return fmt.Sprintf("%.3f%%", p)
	case p < 10:
		return fmt.Sprintf("%.2f%%", p)
	}
	return fmt.Sprintf("%.1f%%", p)
}

// verdict says whether a goal was met.
func verdict(met bool) string {
	if met {
		return "met"
	}
	return "NOT met"
}

// roundsTable is a table of measured steps: per step a cell for each
// round and the median.
type roundsTable struct {
	*table
	rounds int
}

func newRoundsTable(title string, rounds int) *roundsTable {
	header := []string{title}
	for i := 1; i <= rounds; i++ {
		header = append(header, fmt.Sprintf("run %d", i))
	}
	return &roundsTable{table: &table{header: append(header, "median")}, rounds: rounds}
}

// row adds a step's durations, one per round, and returns their median.
func (t *roundsTable) row(name string, ds []time.Duration) time.Duration {
	cells := []string{name}
	for _, d := range ds {
		cells = append(cells, secs(d))
	}
	t.add(append(cells, secs(median(ds)))...)
	return median(ds)
}

// summary adds a row with only a value in the median's column: a ratio
// of medians.
func (t *roundsTable) summary(name, value string) {
	cells := make([]string, t.rounds+2)
	cells[0], cells[t.rounds+1] = name, value
	t.add(cells...)
}
