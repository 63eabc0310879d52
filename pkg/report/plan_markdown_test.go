package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tetherdeploy/tether/pkg/plan"
)

// hugePlan has many nodes, each with long sections, so every shortening
// step is needed at some limit.
func hugePlan(nodes, pkgs, lines int) *plan.Plan {
	var nps []plan.NodePlan
	for n := range nodes {
		var cur, next []plan.Path
		for i := range pkgs {
			cur = append(cur, planPath(fmt.Sprintf("pkg%04d-1.%d", i, n), "1", 1000))
			next = append(next, planPath(fmt.Sprintf("pkg%04d-1.%d", i, n+1), "1", 1000))
		}
		np := plan.ForNode(plan.NodeInput{
			Node:          fmt.Sprintf("node%03d", n),
			CurrentSystem: cur[0].Path, CurrentClosure: cur,
			NewSystem: next[0].Path, NewClosure: next,
		})
		d := &plan.DryActivate{}
		for i := range lines {
			d.Restart = append(d.Restart, fmt.Sprintf("unit-%04d.service", i))
			d.Other = append(d.Other, fmt.Sprintf("output line %04d of node %d", i, n))
		}
		np.DryActivate = d
		nps = append(nps, np)
	}
	return plan.New("github:example/fleet", "", planGenerated, nps)
}

func TestPlanMarkdownStaysUnderLimit(t *testing.T) {
	const url = "https://github.com/example/fleet/actions/runs/42"
	p := hugePlan(12, 300, 200)
	full := PlanMarkdown(p, PlanMarkdownOptions{Limit: 1 << 30})
	if strings.Contains(full, "shortened") || strings.Contains(full, "not shown") {
		t.Fatal("rendering with no effective limit was shortened")
	}
	for _, limit := range []int{64, 200, 1000, 3000, 10_000, 30_000, DefaultCommentLimit, len(full) - 1, len(full)} {
		md := PlanMarkdown(p, PlanMarkdownOptions{Limit: limit, FullPlanURL: url})
		if len(md) > limit {
			t.Errorf("limit %d: got %d bytes", limit, len(md))
		}
		if limit == len(full) {
			if md != full {
				t.Errorf("limit %d (exactly the full size): output was changed", limit)
			}
			continue
		}
		if limit >= 1000 {
			if !strings.Contains(md, "This plan was shortened") || !strings.Contains(md, url) {
				t.Errorf("limit %d: no shortening note with the full plan link", limit)
			}
			checkMarkdownStructure(t, md)
		}
		if limit >= 30_000 {
			// Generous limits shorten sections, never drop whole nodes.
			if strings.Contains(md, "left out to fit the limit") {
				t.Errorf("limit %d: node details dropped although sections could be shortened", limit)
			}
			if got := strings.Count(md, "<details><summary>"); got != 12 {
				t.Errorf("limit %d: %d node blocks, want 12", limit, got)
			}
		}
	}
	// Default limit applies when none is given.
	if md := PlanMarkdown(p, PlanMarkdownOptions{}); len(md) > DefaultCommentLimit {
		t.Errorf("default limit: got %d bytes", len(md))
	}
}

func TestPlanMarkdownShortensLongestFirst(t *testing.T) {
	// One node with a long package table and a short unit list: only
	// the table should lose entries.
	p := hugePlan(1, 400, 3)
	md := PlanMarkdown(p, PlanMarkdownOptions{Limit: 20_000})
	if !strings.Contains(md, "more packages not shown") {
		t.Error("long package table was not shortened")
	}
	for i := range 3 {
		if !strings.Contains(md, fmt.Sprintf("unit-%04d.service", i)) || !strings.Contains(md, fmt.Sprintf("output line %04d", i)) {
			t.Errorf("short section lost entry %d although the long one could give", i)
		}
	}
	if strings.Contains(md, "more lines not shown") || strings.Contains(md, "and 0 more") {
		t.Error("short sections were marked as shortened")
	}
}

func TestPlanMarkdownDropsNodesOnlyWhenNeeded(t *testing.T) {
	p := hugePlan(40, 20, 5)
	md := PlanMarkdown(p, PlanMarkdownOptions{Limit: 6000})
	if len(md) > 6000 {
		t.Fatalf("got %d bytes", len(md))
	}
	if !strings.Contains(md, "nodes left out to fit the limit") {
		t.Error("no node details were dropped although 40 nodes cannot fit in 6000 bytes")
	}

	// Where some blocks fit, the first nodes keep theirs.
	md = PlanMarkdown(hugePlan(15, 40, 5), PlanMarkdownOptions{Limit: 8000})
	if !strings.Contains(md, "more nodes left out to fit the limit") || strings.Contains(md, "<summary><code>node014</code>") {
		t.Error("the last node's details were kept while others had to go")
	}
	if !strings.Contains(md, "<summary><code>node000</code>") {
		t.Error("the first node's details were left out: blocks go from the end")
	}
	if !strings.Contains(md, "details of ") {
		t.Error("the note does not say node details were left out")
	}
	checkMarkdownStructure(t, md)
}

func TestPlanMarkdownRejectsUnsafeURL(t *testing.T) {
	p := hugePlan(1, 400, 3)
	for _, u := range []string{"javascript:alert(1)", "/relative", "https://x.example/a)b [c](d)"} {
		md := PlanMarkdown(p, PlanMarkdownOptions{Limit: 5000, FullPlanURL: u})
		if strings.Contains(md, "javascript:") || strings.Contains(md, "(d)") || strings.Contains(md, "/relative") {
			t.Errorf("URL %q leaked into the comment unescaped", u)
		}
	}
}

func TestPlanMarkdownHostileNames(t *testing.T) {
	md := PlanMarkdown(hostilePlan(), PlanMarkdownOptions{})
	checkMarkdownStructure(t, md)
	checkHostileOutput(t, md, func(line string) bool { return strings.Contains(line, "<code>@everyone") },
		func(w io.Writer) error { return PlanText(w, hostilePlan()) })
}

// checkHostileOutput asserts that names built to break out (see
// hostilePlan, deployHostileReport) stay text: no raw HTML and no mention
// in the Markdown md outside the lines mentionOK allows (code), and no
// escape sequence or bidi control in what writeText prints for a
// terminal.
func checkHostileOutput(t *testing.T, md string, mentionOK func(line string) bool, writeText func(io.Writer) error) {
	t.Helper()
	unescaped := strings.ToLower(strings.ReplaceAll(md, `\<`, ""))
	if strings.Contains(unescaped, "<script") || strings.Contains(unescaped, "<img") {
		t.Errorf("raw HTML from a name reached the Markdown:\n%s", md)
	}
	for _, line := range strings.Split(md, "\n") {
		if strings.Contains(line, "@everyone") && !mentionOK(line) {
			t.Errorf("a mention outside code: %q", line)
		}
	}
	var txt bytes.Buffer
	if err := writeText(&txt); err != nil {
		t.Fatal(err)
	}
	if bytes.ContainsAny(txt.Bytes(), "\x1b\a\u202e") {
		t.Error("terminal output carries escape sequences or bidi controls from the target")
	}
}

// checkMarkdownStructure asserts that the only HTML in md is ours, that
// code fences close, and that every table row has as many cells as its
// header — the ways a hostile name could break out.
func checkMarkdownStructure(t *testing.T, md string) {
	t.Helper()
	allowed := []string{"<code>", "</code>", "<details>", "</details>", "<summary>", "</summary>"}
	headerCells := 0
	unclosed := proseLines(md, func(n int, line string) {
		for i := 0; i < len(line); i++ {
			switch line[i] {
			case '\\':
				i++ // an escape pair
			case '<':
				ok := false
				for _, tag := range allowed {
					ok = ok || strings.HasPrefix(line[i:], tag)
				}
				if !ok {
					t.Errorf("line %d: unescaped '<' outside code: %q", n+1, line)
				}
			}
		}
		if strings.HasPrefix(line, "|") {
			cells := gfmCells(line)
			switch {
			case strings.HasPrefix(line, "|:") || strings.HasPrefix(line, "|--"):
			case headerCells == 0 || strings.HasPrefix(line, "| Node") || strings.HasPrefix(line, "| | Package"):
				headerCells = cells
			case strings.HasPrefix(line, "| …"):
			case cells != headerCells:
				t.Errorf("line %d: %d cells, header has %d: %q", n+1, cells, headerCells, line)
			}
		} else {
			headerCells = 0
		}
	})
	if unclosed {
		t.Error("a code fence is never closed")
	}
}

// proseLines calls fn with every line of md outside fenced code blocks
// (numbered from 0), and reports whether a fence is left open.
func proseLines(md string, fn func(n int, line string)) (unclosed bool) {
	fence := ""
	for n, line := range strings.Split(md, "\n") {
		switch {
		case fence != "":
			if strings.HasPrefix(line, fence) && strings.Trim(line, "`") == "" {
				fence = ""
			}
		case strings.HasPrefix(line, "```"):
			fence = line[:len(line)-len(strings.TrimLeft(line, "`"))]
		default:
			fn(n, line)
		}
	}
	return fence != ""
}

// gfmCells counts table cells the way the GFM table parser splits them:
// a backslash always pairs with the next character.
func gfmCells(line string) int {
	pipes := 0
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case '\\':
			i++
		case '|':
			pipes++
		}
	}
	return pipes - 1
}

func TestPlanJSONRoundTrip(t *testing.T) {
	p := fleetPlan(t)
	var buf bytes.Buffer
	if err := PlanJSON(&buf, p); err != nil {
		t.Fatal(err)
	}
	var back plan.Plan
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p, &back); diff != "" {
		t.Errorf("JSON loses information (-plan +decoded):\n%s", diff)
	}
}

func TestSizeAndDelta(t *testing.T) {
	tests := []struct {
		n     int64
		bytes string
		delta string
	}{
		{0, "0 B", "±0 B"},
		{1023, "1023 B", "+1023 B"},
		{1024, "1.0 KiB", "+1.0 KiB"},
		{47_815_065, "45.6 MiB", "+45.6 MiB"},
		{419_430, "409.6 KiB", "+409.6 KiB"},
		{5 << 30, "5.0 GiB", "+5.0 GiB"},
		{3 << 40, "3.0 TiB", "+3.0 TiB"},
	}
	for _, tt := range tests {
		if got := sizeText(tt.n); got != tt.bytes {
			t.Errorf("sizeText(%d) = %q, want %q", tt.n, got, tt.bytes)
		}
		if got := deltaText(tt.n); got != tt.delta {
			t.Errorf("deltaText(%d) = %q, want %q", tt.n, got, tt.delta)
		}
	}
	if got := deltaText(-1536); got != "-1.5 KiB" {
		t.Errorf("deltaText(-1536) = %q, want -1.5 KiB", got)
	}
}
