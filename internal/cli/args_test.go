package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	ucli "github.com/urfave/cli/v2"

	"github.com/tetherdeploy/tether/internal/app"
	"github.com/tetherdeploy/tether/pkg/deploy"
	"github.com/tetherdeploy/tether/pkg/fleet"
)

// parsed runs the command line through the real command tree with every
// command's action replaced by one that records what the command was
// given: each flag's value and the arguments.
func parsed(t *testing.T, args ...string) string {
	t.Helper()
	c := &command{app: &app.App{}, stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
	ua := c.newApp()
	var got string
	for _, cmd := range ua.Commands {
		cmd.Action = func(ctx *ucli.Context) error {
			var b strings.Builder
			fmt.Fprintf(&b, "%s:", cmd.Name)
			for _, f := range cmd.Flags {
				n := f.Names()[0]
				fmt.Fprintf(&b, " %s=%v(%v)", n, ctx.Value(n), ctx.IsSet(n))
			}
			fmt.Fprintf(&b, " args=%q", ctx.Args().Slice())
			got = b.String()
			return nil
		}
	}
	if err := ua.RunContext(context.Background(), flagsFirst(ua, append([]string{"tether"}, args...))); err != nil {
		t.Fatalf("tether %s: %v", strings.Join(args, " "), err)
	}
	return got
}

// flagArgs gives every flag of the command a value, as a user would: one
// group of words per flag.
func flagArgs(t *testing.T, cmd *ucli.Command) [][]string {
	t.Helper()
	var out [][]string
	for _, f := range cmd.Flags {
		name := "--" + f.Names()[0]
		switch f.(type) {
		case *ucli.BoolFlag:
			out = append(out, []string{name})
		case *ucli.StringFlag, *ucli.StringSliceFlag:
			out = append(out, []string{name, "v-" + f.Names()[0]})
		case *ucli.IntFlag:
			out = append(out, []string{name, "7"})
		case *ucli.DurationFlag:
			out = append(out, []string{name, "3s"})
		default:
			t.Fatalf("%s: flag %s of type %T: teach this test a value for it", cmd.Name, name, f)
		}
	}
	return out
}

// Every command reads its flags the same wherever they stand: before the
// node names, after them, or between them.
func TestFlagsAnywhere(t *testing.T) {
	c := &command{app: &app.App{}}
	for _, cmd := range c.newApp().Commands {
		if cmd.SkipFlagParsing {
			continue
		}
		groups := flagArgs(t, cmd)
		if len(groups) == 0 {
			continue
		}
		t.Run(cmd.Name, func(t *testing.T) {
			flags := slices.Concat(groups...)
			nodes := []string{"alpha", "@web"}
			first := parsed(t, slices.Concat([]string{cmd.Name}, flags, nodes)...)
			if !strings.Contains(first, `args=["alpha" "@web"]`) {
				t.Fatalf("flags first: %s", first)
			}
			for _, args := range [][]string{
				slices.Concat([]string{cmd.Name}, nodes, flags),
				slices.Concat([]string{cmd.Name, nodes[0]}, flags, nodes[1:]),
				slices.Concat([]string{cmd.Name}, groups[0], nodes[:1], slices.Concat(groups[1:]...), nodes[1:]),
			} {
				if got := parsed(t, args...); got != first {
					t.Errorf("tether %s\n got  %s\n want %s", strings.Join(args, " "), got, first)
				}
			}
		})
	}
}

// `--` ends the flags: what follows is node names, dashes and all.
func TestDoubleDashEndsFlags(t *testing.T) {
	got := parsed(t, "deploy", "alpha", "--keep-going", "--", "--json", "out.json", "-x")
	if !strings.Contains(got, `args=["alpha" "--json" "out.json" "-x"]`) || !strings.Contains(got, "json=(false)") ||
		!strings.Contains(got, "keep-going=true(true)") {
		t.Errorf("tether deploy alpha --keep-going -- --json out.json -x: %s", got)
	}
}

// The command line, end to end on a fake engine.
func TestDeployJSONAfterNodeName(t *testing.T) {
	f := newFrontEnds(t, "alpha", "beta")
	a, eng := f.app(func(n []*fleet.Node) *deploy.Report { return reportOf(n, false, deploy.StatusDeployed) })
	out := filepath.Join(t.TempDir(), "out.json")
	if code, log := f.cli(a, "deploy", "alpha", "--json", out); code != app.ExitOK {
		t.Fatalf("tether deploy alpha --json out.json: exit %d\n%s", code, log)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep deploy.Report
	if err := json.Unmarshal(data, &rep); err != nil || len(rep.Results) != 1 || rep.Results[0].Node != "alpha" {
		t.Errorf("--json after the node name wrote %s (%v), want alpha's result only", data, err)
	}
	if calls := eng.Calls(); !slices.Equal(calls, []string{"deploy"}) {
		t.Errorf("engine calls %v", calls)
	}
}
