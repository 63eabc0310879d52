package report

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/pkg/plan"
)

const planStoreAlphabet = "0123456789abcdfghijklmnpqrsvwxyz"

// sp makes a valid store path; build tells two builds of one name apart.
func planStorePath(name, build string) string {
	sum := sha256.Sum256([]byte(name + "\x00" + build))
	h := make([]byte, 32)
	for i := range h {
		h[i] = planStoreAlphabet[int(sum[i])%len(planStoreAlphabet)]
	}
	return "/nix/store/" + string(h) + "-" + name
}

func planPath(name, build string, size int64) plan.Path {
	return plan.Path{Path: planStorePath(name, build), NarSize: size}
}

var planGenerated = time.Date(2024, 3, 1, 12, 30, 0, 0, time.UTC)

// fleetPlan has one node of every status.
func fleetPlan(t *testing.T) *plan.Plan {
	t.Helper()
	common := []plan.Path{
		planPath("glibc-2.38-44", "1", 30_000_000),
		planPath("python3-3.11.8", "1", 80_000_000),
	}
	frame1Cur := append([]plan.Path{
		planPath("nixos-system-frame1-24.05.20240215.0123456", "1", 20_000),
		planPath("openssl-3.0.13", "1", 6_000_000),
		planPath("openssl-3.0.13-dev", "1", 1_000_000),
		planPath("nginx-1.24.0", "1", 1_500_000),
		planPath("curl-8.6.0", "1", 2_000_000),
		planPath("curl-8.5.0", "1", 2_000_000),
		planPath("oldtool-1.0", "1", 500_000),
		planPath("etc", "1", 100_000),
		planPath("unit-nginx.service", "1", 1_000),
	}, common...)
	frame1New := append([]plan.Path{
		planPath("nixos-system-frame1-24.05.20240301.89abcde", "1", 20_000),
		planPath("openssl-3.0.14", "1", 6_100_000),
		planPath("openssl-3.0.14-dev", "1", 1_000_000),
		planPath("nginx-1.22.1", "1", 1_400_000),
		planPath("curl-8.6.0", "1", 2_000_000),
		planPath("curl-8.7.1", "1", 2_100_000),
		planPath("newtool-0.3", "1", 700_000),
		planPath("etc", "2", 100_500),
		planPath("unit-nginx.service", "2", 1_000),
	}, common...)
	frame1 := plan.ForNode(plan.NodeInput{
		Node:          "frame1",
		CurrentSystem: frame1Cur[0].Path, CurrentClosure: frame1Cur,
		NewSystem: frame1New[0].Path, NewClosure: frame1New,
	})
	dry := plan.ParseDryActivate(planReadFile(t, "../plan/testdata/dry-activate-perl.txt"))
	frame1.DryActivate = &dry

	webNew := append([]plan.Path{planPath("nixos-system-web-24.05.20240301.89abcde", "1", 20_000), planPath("hello-2.12.1", "1", 200_000)}, common...)
	web := plan.ForNode(plan.NodeInput{Node: "web", NewSystem: webNew[0].Path, NewClosure: webNew})

	dbSys := planPath("nixos-system-db-24.05.20240301.89abcde", "1", 20_000)
	db := plan.ForNode(plan.NodeInput{
		Node:          "db",
		CurrentSystem: dbSys.Path, CurrentClosure: append([]plan.Path{dbSys}, common...),
		NewSystem: dbSys.Path, NewClosure: append([]plan.Path{dbSys}, common...),
	})

	rpi := plan.Unreachable("rpi", planStorePath("nixos-system-rpi-24.05.20240301.89abcde", "1"),
		errors.New("dial rpi via frame1: ssh: handshake failed: read tcp 10.0.0.1:41234->10.0.0.7:22: i/o timeout"))

	nucCur := append([]plan.Path{planPath("nixos-system-nuc-24.05.20240215.0123456", "1", 20_000)}, common...)
	nucNew := append([]plan.Path{planPath("nixos-system-nuc-24.05.20240301.89abcde", "1", 20_000)}, common...)
	nuc := plan.ForNode(plan.NodeInput{
		Node:          "nuc",
		CurrentSystem: nucCur[0].Path, CurrentClosure: nucCur,
		NewSystem: nucNew[0].Path, NewClosure: nucNew,
	})
	nuc.DryActivate = &plan.DryActivate{Error: "switch-to-configuration dry-activate exited with status 1:\nerror: This is not a NixOS installation!"}

	build := plan.Failed("build", errors.New("nix build .#nixosConfigurations.build.config.system.build.toplevel: exit status 1\nerror: builder for '/nix/store/00000000000000000000000000000000-foo.drv' failed with exit code 2;\n       last 2 log lines:\n       > make: *** [Makefile:12: all] Error 1"))

	return plan.New("github:example/fleet", "0123456789abcdef0123456789abcdef01234567", planGenerated,
		[]plan.NodePlan{frame1, web, db, rpi, nuc, build})
}

// hostilePlan carries names that try to break out of Markdown and HTML.
func hostilePlan() *plan.Plan {
	cur := []plan.Path{planPath("nixos-system-x-1", "1", 10), planPath("pkg-1.0", "1", 10)}
	next := []plan.Path{planPath("nixos-system-x-2", "1", 10), planPath("pkg-2.0", "1", 10), planPath("a_b*c-1.0", "1", 10)}
	n := plan.ForNode(plan.NodeInput{
		Node:          "evil|</details><script>alert(1)</script>@admin",
		CurrentSystem: cur[0].Path, CurrentClosure: cur, NewSystem: next[0].Path, NewClosure: next,
	})
	n.DryActivate = &plan.DryActivate{
		Restart: []string{"a|b.service", "`x`.service", "<img src=x onerror=alert(1)>.service", "@everyone.service", "\\|z.service"},
		Other: []string{
			"```",
			"</details>",
			"\x1b[31mred\x1b[0m and a bell\a and a \u202ereversed",
			"[click](javascript:alert(1)) **bold** $x$",
		},
	}
	return plan.New("github:evil/`repo`|x", "", planGenerated, []plan.NodePlan{n})
}

// bigPlan has enough changes and output to need shortening.
func bigPlan() *plan.Plan {
	var cur, next []plan.Path
	cur = append(cur, planPath("nixos-system-big-1", "1", 10_000))
	next = append(next, planPath("nixos-system-big-2", "1", 10_000))
	for i := range 150 {
		cur = append(cur, planPath(fmt.Sprintf("package%03d-1.%d", i, i), "1", int64(1000+i)))
		next = append(next, planPath(fmt.Sprintf("package%03d-1.%d", i, i+1), "1", int64(1100+i)))
	}
	big := plan.ForNode(plan.NodeInput{Node: "big", CurrentSystem: cur[0].Path, CurrentClosure: cur, NewSystem: next[0].Path, NewClosure: next})
	var units, other []string
	for i := range 60 {
		units = append(units, fmt.Sprintf("service-%02d.service", i))
		other = append(other, fmt.Sprintf("activation output line %02d", i))
	}
	big.DryActivate = &plan.DryActivate{Restart: units, Other: other}

	small := plan.ForNode(plan.NodeInput{
		Node:          "small",
		CurrentSystem: planStorePath("nixos-system-small-1", "1"), CurrentClosure: []plan.Path{planPath("tool-1.0", "1", 100)},
		NewSystem: planStorePath("nixos-system-small-2", "1"), NewClosure: []plan.Path{planPath("tool-1.1", "1", 100)},
	})
	small.DryActivate = &plan.DryActivate{Restart: []string{"tool.service"}}
	return plan.New("github:example/fleet", "", planGenerated, []plan.NodePlan{big, small})
}

func planReadFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPlanGolden(t *testing.T) {
	tests := []struct {
		name string
		plan func(*testing.T) *plan.Plan
		opts PlanMarkdownOptions
	}{
		{"plan-fleet", fleetPlan, PlanMarkdownOptions{}},
		{"plan-hostile", func(*testing.T) *plan.Plan { return hostilePlan() }, PlanMarkdownOptions{}},
		{"plan-truncated", func(*testing.T) *plan.Plan { return bigPlan() }, PlanMarkdownOptions{Limit: 6000, FullPlanURL: "https://github.com/example/fleet/actions/runs/42"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.plan(t)
			var txt, js bytes.Buffer
			if err := PlanText(&txt, p); err != nil {
				t.Fatal(err)
			}
			if err := PlanJSON(&js, p); err != nil {
				t.Fatal(err)
			}
			md := PlanMarkdown(p, tt.opts)
			golden(t, tt.name+".txt.golden", txt.String())
			golden(t, tt.name+".json.golden", js.String())
			golden(t, tt.name+".md.golden", md)
		})
	}
}
