package report

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/pkg/deploy"
)

var deployStarted = time.Date(2024, 3, 1, 12, 30, 0, 0, time.UTC)

func deploySecs(s float64) deploy.Seconds {
	return deploy.Seconds(time.Duration(s * float64(time.Second)))
}

func deploySys(node, version, build string) string {
	return planStorePath("nixos-system-"+node+"-"+version, build)
}

// deployFleetReport has one node of every status.
func deployFleetReport() *deploy.Report {
	oldV, newV := "24.05.20240215.0123456", "24.05.20240301.89abcde"
	return &deploy.Report{
		DeployID: "20240301-123000-ab12",
		Flake:    "github:example/fleet",
		Action:   "switch",
		Started:  deployStarted,
		Finished: deployStarted.Add(83 * time.Second),
		Results: []deploy.Result{
			{
				Node: "frame1", Status: deploy.StatusDeployed, Action: "switch",
				Previous: deploySys("frame1", oldV, "1"), New: deploySys("frame1", newV, "1"), Current: deploySys("frame1", newV, "1"),
				Generation: 42,
				Profiles: []deploy.ProfileResult{
					{Profile: "system", Status: deploy.StatusDeployed, Path: deploySys("frame1", newV, "1"), Generation: 42},
					{Profile: "home", Status: deploy.StatusDeployed, Path: planStorePath("home-manager-generation", "2"), Generation: 7},
				},
				Copied:   deploy.CopyStats{Paths: 12, Bytes: 3_500_000, Present: 340, Substituted: 4},
				Timings:  deploy.Timings{Build: deploySecs(62), Copy: deploySecs(3.1), Activate: deploySecs(4), Confirm: deploySecs(0.8), Total: deploySecs(69.9)},
				DeployID: "20240301-123000-ab12",
			},
			{
				Node: "rpi", Status: deploy.StatusRolledBack, Action: "switch",
				Previous: deploySys("rpi", oldV, "1"), New: deploySys("rpi", newV, "1"), Current: deploySys("rpi", oldV, "1"),
				Copied:  deploy.CopyStats{Paths: 30, Bytes: 80_000_000},
				Timings: deploy.Timings{Copy: deploySecs(41), Activate: deploySecs(6), Confirm: deploySecs(30), Total: deploySecs(77)},
				Error:   "no confirmation within 30s: the node stopped answering after activation",
				Reason:  "no confirmation within 30s",
			},
			{
				Node: "web", Status: deploy.StatusFailed, Action: "switch",
				Previous: deploySys("web", oldV, "1"),
				Timings:  deploy.Timings{Build: deploySecs(12), Total: deploySecs(12)},
				Error:    "build web: nix-store --realise /nix/store/00000000000000000000000000000000-nixos-system-web.drv: exit status 1\nerror: builder for '/nix/store/00000000000000000000000000000000-foo.drv' failed with exit code 2;\n       last 2 log lines:\n       > make: *** [Makefile:12: all] Error 1",
			},
			{Node: "nuc", Status: deploy.StatusUnreachable, Action: "switch", New: deploySys("nuc", newV, "1"),
				Error: "dial nuc via frame1: ssh: handshake failed: i/o timeout"},
			{Node: "nas", Status: deploy.StatusUncertain, Action: "switch",
				Previous: deploySys("nas", oldV, "1"), New: deploySys("nas", newV, "1"),
				Error: "lost contact during activation and could not reconnect within 2m"},
			{Node: "pi2", Status: deploy.StatusRebootRequired, Action: "switch",
				Previous: deploySys("pi2", newV, "1"), New: deploySys("pi2", newV, "2"), Generation: 9,
				Timings: deploy.Timings{Activate: deploySecs(3725), Total: deploySecs(3725)}},
			{Node: "db", Status: deploy.StatusSkipped, Action: "switch", New: deploySys("db", newV, "1")},
		},
	}
}

func deployRollbackReport() *deploy.Report {
	return &deploy.Report{
		DeployID: "20240302-080000-cd34",
		Flake:    ".",
		Action:   "rollback",
		Started:  deployStarted,
		Finished: deployStarted.Add(40 * time.Second),
		Results: []deploy.Result{
			{Node: "frame1", Status: deploy.StatusDeployed, Action: "rollback",
				Previous: deploySys("frame1", "24.05.20240301.89abcde", "1"), New: deploySys("frame1", "24.05.20240215.0123456", "1"),
				Generation: 41, Timings: deploy.Timings{Activate: deploySecs(5), Confirm: deploySecs(1), Total: deploySecs(6)}},
			{Node: "rpi", Status: deploy.StatusRolledBack, Action: "rollback",
				Previous: deploySys("rpi", "24.05.20240301.89abcde", "1"), New: deploySys("rpi", "24.05.20240215.0123456", "1"),
				Current: deploySys("rpi", "24.05.20240301.89abcde", "1"),
				Error:   "activation of generation 40 failed: switch-to-configuration exited with status 4 (units failed)", Reason: "units failed"},
		},
	}
}

// deployHostileReport carries names and messages that try to break out of
// Markdown, HTML and the terminal.
func deployHostileReport() *deploy.Report {
	return &deploy.Report{
		Flake:  "github:evil/`repo`|x",
		Action: "switch",
		Results: []deploy.Result{{
			Node:   "evil|</details><script>alert(1)</script>@admin",
			Status: deploy.StatusFailed,
			Error:  "```\n</details>\n\x1b[31mred\x1b[0m and a bell\a and a \u202ereversed\n[click](javascript:alert(1)) @everyone | x",
			Reason: "<img src=x onerror=alert(1)>",
		}},
	}
}

// deployBigReport has many failing nodes with long errors.
func deployBigReport(nodes, lines int) *deploy.Report {
	r := &deploy.Report{Flake: ".", Action: "switch", Started: deployStarted, Finished: deployStarted.Add(time.Hour)}
	for i := range nodes {
		var errLines []string
		for l := range lines {
			errLines = append(errLines, fmt.Sprintf("node%03d log line %03d: something went wrong here", i, l))
		}
		r.Results = append(r.Results, deploy.Result{
			Node: fmt.Sprintf("node%03d", i), Status: deploy.StatusRolledBack,
			Previous: deploySys(fmt.Sprint("node", i), "1.0", "1"), New: deploySys(fmt.Sprint("node", i), "1.1", "1"),
			Error: strings.Join(errLines, "\n"), Reason: "activation failed",
		})
	}
	return r
}

func TestDeployGolden(t *testing.T) {
	tests := []struct {
		name   string
		report *deploy.Report
		opts   DeployMarkdownOptions
	}{
		{"deploy-fleet", deployFleetReport(), DeployMarkdownOptions{Commit: "0123456789abcdef0123456789abcdef01234567", Environment: "production", RunURL: "https://github.com/example/fleet/actions/runs/42"}},
		{"deploy-rollback", deployRollbackReport(), DeployMarkdownOptions{}},
		{"deploy-hostile", deployHostileReport(), DeployMarkdownOptions{}},
		{"deploy-truncated", deployBigReport(30, 60), DeployMarkdownOptions{Limit: 6000, RunURL: "https://github.com/example/fleet/actions/runs/42"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var txt bytes.Buffer
			if err := DeployText(&txt, tt.report); err != nil {
				t.Fatal(err)
			}
			md := DeployMarkdown(tt.report, tt.opts)
			checkMarkdownStructure(t, md)
			golden(t, tt.name+".txt.golden", txt.String())
			golden(t, tt.name+".md.golden", md)
		})
	}
}

func TestDeployMarkdownStaysUnderLimit(t *testing.T) {
	for _, tc := range []struct{ nodes, lines, limit int }{
		{1, 5000, 2000},
		{30, 60, 6000},
		{200, 10, 65536},
		{500, 0, 4000},
		{3, 3, 100},
		{3, 3, 0}, // default limit, nothing to cut
	} {
		r := deployBigReport(tc.nodes, tc.lines)
		md := DeployMarkdown(r, DeployMarkdownOptions{Limit: tc.limit})
		limit := tc.limit
		if limit == 0 {
			limit = DefaultCommentLimit
		}
		if len(md) > limit {
			t.Errorf("%d nodes × %d lines, limit %d: %d bytes", tc.nodes, tc.lines, limit, len(md))
		}
		checkMarkdownStructure(t, md)
		full := DeployMarkdown(r, DeployMarkdownOptions{Limit: 1 << 30})
		if shortened := strings.Contains(md, "This report was shortened"); limit >= 1000 && shortened != (len(full) > limit) {
			t.Errorf("%d nodes × %d lines, limit %d: shortened note %v, full rendering is %d bytes", tc.nodes, tc.lines, limit, shortened, len(full))
		}
	}
}

// A shortened error keeps the command that failed (its first line) and
// the end of the log, where the cause is.
func TestDeployMarkdownKeepsBothEndsOfAnError(t *testing.T) {
	r := deployBigReport(1, 500)
	md := DeployMarkdown(r, DeployMarkdownOptions{Limit: 4000})
	for _, want := range []string{"node000 log line 000:", "node000 log line 499:", "lines not shown"} {
		if !strings.Contains(md, want) {
			t.Errorf("shortened report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "node000 log line 250:") {
		t.Error("the middle of the log was kept while it had to be cut")
	}
	if !strings.Contains(md, "<code>node000</code> | ↩️ failed, rolled back") {
		t.Errorf("the node's row is missing:\n%s", md)
	}
}

func TestDeployHostileNames(t *testing.T) {
	md := DeployMarkdown(deployHostileReport(), DeployMarkdownOptions{})
	checkHostileOutput(t, md, func(line string) bool { return strings.HasPrefix(line, "[click]") },
		func(w io.Writer) error { return DeployText(w, deployHostileReport()) })
}

func TestDeploySystemLabel(t *testing.T) {
	tests := []struct{ path, want string }{
		{planStorePath("nixos-system-frame1-24.05.20240301.89abcde", "1"), "24.05.20240301.89abcde"},
		{planStorePath("home-manager-generation", "1"), "home-manager-generation"},
		{"/nix/var/nix/profiles/system-41-link", "41-link"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := deploySystemLabel(tt.path); got != tt.want {
			t.Errorf("deploySystemLabel(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
	a, b := deploySys("x", "1.0", "1"), deploySys("x", "1.0", "2")
	if got := deployChange(a, b, "->", asIs); got != deploySystemHash(a)+" 1.0 -> "+deploySystemHash(b)+" 1.0" {
		t.Errorf("two builds of one version: %q, want the hashes to tell them apart", got)
	}
}

func TestDeployDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, ""},
		{400 * time.Millisecond, "0.4s"},
		{59 * time.Second, "59.0s"},
		{62 * time.Second, "1m02s"},
		{3725 * time.Second, "1h02m"},
	}
	for _, tt := range tests {
		if got := deployDuration(tt.d); got != tt.want {
			t.Errorf("deployDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}
