package report

import (
	"html"
	"regexp"
	"strings"
	"testing"

	"github.com/tetherdeploy/tether/pkg/deploy"
)

// hostileText tries every way text can become more than text in a comment.
const hostileText = "ping @octocat and @org/team, (@admin) see #12, https://evil.example/x, www.evil.example, " +
	"[click](https://evil.example) ![i](https://evil.example/i.png) <a href=\"https://evil.example\">a</a> <img src=x> **bold** `code` |cell|"

// liveMarkup lists what GitHub would turn hostile text in md into: a
// mention, an issue reference or a link (checkMarkdownStructure finds raw
// HTML and broken tables). It reads md
// as GitHub shows it: fenced code blocks skipped, the targets of
// tether's own links removed, backslash escapes and entities resolved.
func liveMarkup(md string) []string {
	var text strings.Builder
	proseLines(md, func(_ int, line string) { text.WriteString(line + "\n") })
	s := text.String()
	// An unescaped "](" is one of tether's own links (safeURL'd).
	s = regexp.MustCompile(`([^\\])\]\([^)]*\)`).ReplaceAllString(s, "$1]")
	var found []string
	s = regexp.MustCompile(`\\(.)`).ReplaceAllString(s, "$1")
	s = html.UnescapeString(s)
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`(?i)(?:^|[^a-z0-9_])@[a-z0-9][a-z0-9-]*(?:/[a-z0-9-]+)?`), // mention, team mention
		regexp.MustCompile(`#[0-9]+`),                       // issue reference
		regexp.MustCompile(`(?i)(?:https?|ftp)://[a-z0-9]`), // URL autolink
		regexp.MustCompile(`(?i)(?:^|[\s*_~(\[])www\.`),     // www autolink
	} {
		found = append(found, re.FindAllString(s, -1)...)
	}
	return found
}

func TestMarkdownTextStaysText(t *testing.T) {
	for name, md := range map[string]string{
		"text":        MarkdownText(hostileText),
		"code":        mdCode(hostileText),
		"html":        "<details><summary>" + htmlText(hostileText) + "</summary></details>",
		"html code":   "<details><summary>" + htmlCode(hostileText) + "</summary></details>",
		"table cell":  "| a | b |\n|--|--|\n| " + MarkdownText(hostileText) + " | x |",
		"start":       MarkdownText("@octocat"),
		"after blank": MarkdownText("x\t@octocat"),
	} {
		if live := liveMarkup(md); len(live) > 0 {
			t.Errorf("%s: live markup %q in:\n%s", name, live, md)
		}
		checkMarkdownStructure(t, md)
	}
	// The checker itself sees what it must.
	if live := liveMarkup("hi @octocat, see #1 https://x.example"); len(live) != 3 {
		t.Errorf("liveMarkup found %q in plain hostile text, want a mention, a reference and a link", live)
	}
	if got := MarkdownText("getty@tty1.service"); got != `getty\@tty1.service` {
		t.Errorf("a unit name with @ inside a word: %q, want only a backslash", got)
	}
	if n := strings.Count(MarkdownText(hostileText), "|"); n != strings.Count(MarkdownText(hostileText), `\|`) {
		t.Error("a pipe was left unescaped")
	}
}

// Rollback reasons and per-profile errors come from nodes; in the report
// they must stay text like every other name.
func TestDeployMarkdownReasonsAndProfileErrorsStayText(t *testing.T) {
	r := &deploy.Report{Flake: ".", Action: "switch", Results: []deploy.Result{{
		Node: "web", Status: deploy.StatusRolledBack, Action: "switch",
		Error:  "activation failed",
		Reason: hostileText,
		Profiles: []deploy.ProfileResult{
			{Profile: "system", Status: deploy.StatusRolledBack, Error: hostileText},
			{Profile: "home @octocat", Status: deploy.Status("weird @org/team"), Error: "x"},
		},
	}, {Node: "@octocat", Status: deploy.Status("@org/team https://evil.example")}}}
	md := DeployMarkdown(r, DeployMarkdownOptions{Commit: "@octocat", Environment: "@org/team", RunURL: "https://github.example/o/r/actions/runs/1"})
	if !strings.Contains(md, "octocat") || !strings.Contains(md, "evil") {
		t.Fatalf("the hostile text is not shown at all:\n%s", md)
	}
	if live := liveMarkup(md); len(live) > 0 {
		t.Errorf("live markup %q in:\n%s", live, md)
	}
	checkMarkdownStructure(t, md)
}

func TestFailureMarkdownFitsAndKeepsBothEnds(t *testing.T) {
	var lines []string
	for i := range 5000 {
		lines = append(lines, strings.Repeat("x", 40)+" line "+string(rune('a'+i%26)))
	}
	lines[0] = "evaluate flake: ``` </details> @octocat"
	lines[len(lines)-1] = "error: attribute 'frame1' missing"
	md := FailureMarkdown("tether plan", "The plan failed:\n\n", strings.Join(lines, "\n"), 4000)
	if len(md) > 4000 {
		t.Fatalf("%d bytes, limit 4000", len(md))
	}
	for _, want := range []string{"### tether plan\n\n> [!NOTE]\n> This report was shortened", "The plan failed:\n\n````text\nevaluate flake", "lines not shown", "error: attribute 'frame1' missing\n````"} {
		if !strings.Contains(md, want) {
			t.Errorf("lacks %q:\n%s", want, md)
		}
	}
	checkMarkdownStructure(t, md)
}
