package github

import (
	"encoding/json"
	"github.com/tetherdeploy/tether/internal/app"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"

	"github.com/tetherdeploy/tether/pkg/deploy"
	"github.com/tetherdeploy/tether/pkg/plan"
)

// workflowCommand is a command the runner would carry out.
type workflowCommand struct {
	Name  string
	Props map[string]string
	Data  string
}

// runnerCommandNames are the commands the runner knows; it matches them
// without regard to case.
var runnerCommandNames = []string{
	"add-mask", "add-path", "add-matcher", "remove-matcher", "debug", "warning", "error", "notice",
	"group", "endgroup", "echo", "save-state", "set-env", "set-output", "stop-commands",
}

// runnerCommands reads one output stream of a step as the runner does and
// returns the commands it would carry out, stop-commands and resumes
// included, and whether commands are still stopped at the end:
//
//   - lines end at "\n", "\r" or "\r\n";
//   - "::name props::data" after any leading Unicode white space (the
//     runner's TrimStart removes what unicode.IsSpace matches);
//   - otherwise "##[name props]data" anywhere in the line;
//   - while stopped, only a command named like the stop token resumes.
//
// (The runner may also compare with culture-aware functions; tether's
// defence does not depend on how hostile text is matched, only on the
// block around it, so this model matches ordinally.)
func runnerCommands(output string) (cmds []workflowCommand, stopped bool) {
	known := map[string]bool{}
	for _, n := range runnerCommandNames {
		known[n] = true
	}
	token := ""
	output = strings.ReplaceAll(output, "\r\n", "\n")
	for _, line := range strings.FieldsFunc(output, func(r rune) bool { return r == '\n' || r == '\r' }) {
		c, ok := parseCommandV2(line, known)
		if !ok {
			c, ok = parseCommandV1(line, known)
		}
		if !ok {
			continue
		}
		if stopped {
			if token != "" && strings.EqualFold(c.Name, token) {
				cmds = append(cmds, c)
				delete(known, strings.ToLower(token))
				stopped, token = false, ""
			}
			continue
		}
		cmds = append(cmds, c)
		if strings.EqualFold(c.Name, "stop-commands") {
			stopped, token = true, c.Data
			known[strings.ToLower(token)] = true
		}
	}
	return cmds, stopped
}

func parseCommandV2(line string, known map[string]bool) (workflowCommand, bool) {
	msg := strings.TrimLeftFunc(line, unicode.IsSpace)
	if !strings.HasPrefix(msg, "::") {
		return workflowCommand{}, false
	}
	end := strings.Index(msg[2:], "::")
	if end < 0 {
		return workflowCommand{}, false
	}
	info := msg[2 : 2+end]
	name, props, _ := strings.Cut(info, " ")
	if !known[strings.ToLower(name)] {
		return workflowCommand{}, false
	}
	c := workflowCommand{Name: name, Props: map[string]string{}, Data: unescapeCommand(msg[2+end+2:])}
	for _, p := range strings.Split(strings.TrimSpace(props), ",") {
		if k, v, ok := strings.Cut(p, "="); ok && k != "" && v != "" {
			c.Props[k] = unescapeCommand(v)
		}
	}
	return c, true
}

func parseCommandV1(line string, known map[string]bool) (workflowCommand, bool) {
	i := strings.Index(line, "##[")
	if i < 0 {
		return workflowCommand{}, false
	}
	rb := strings.IndexByte(line[i:], ']')
	if rb < 0 {
		return workflowCommand{}, false
	}
	info := line[i+3 : i+rb]
	name, props, _ := strings.Cut(info, " ")
	if !known[strings.ToLower(name)] {
		return workflowCommand{}, false
	}
	c := workflowCommand{Name: name, Props: map[string]string{}, Data: unescapeCommand(line[i+rb+1:])}
	for _, p := range strings.Split(props, ";") {
		if k, v, ok := strings.Cut(p, "="); ok && k != "" && v != "" {
			c.Props[k] = unescapeCommand(v)
		}
	}
	return c, true
}

func unescapeCommand(s string) string {
	return strings.NewReplacer("%0D", "\r", "%0A", "\n", "%3A", ":", "%2C", ",", "%3B", ";", "%5D", "]", "%25", "%").Replace(s)
}

// pwned is the data of every hostile command below: the runner carrying
// out one of them is a command whose data or a property starts with it.
const pwned = "PWNED"

// hostileLines are lines of output that try to command the run, each in a
// way the runner accepts: a carriage return starting a new line, Unicode
// white space before "::" (no-break space, em space), the older "##[" form
// in the middle of a line, and a stop-commands that would silence
// tether's own commands.
var hostileLines = []string{
	"building\r::add-mask::" + pwned,
	"\r::set-output name=deployed::" + pwned,
	"\u00a0::add-mask::" + pwned,
	"\u2003::error title=" + pwned + "::" + pwned,
	"progress 50% ##[add-mask]" + pwned,
	"\t\u00a0##[set-output name=failed;]" + pwned,
	"::stop-commands::" + pwned,
}

// checkNoHostileCommand fails when the runner, reading output, would carry
// out a command from hostile text, or would end the step with commands
// stopped.
func checkNoHostileCommand(t *testing.T, stream, output string) {
	t.Helper()
	cmds, stopped := runnerCommands(output)
	if stopped {
		t.Errorf("%s: workflow commands are still stopped at the end of the step", stream)
	}
	for _, c := range cmds {
		// Case folded: the Action lower-cases a command input.
		from := func(s string) bool { return strings.HasPrefix(strings.ToUpper(s), pwned) }
		hostile := from(c.Data) || from(c.Name)
		for _, v := range c.Props {
			hostile = hostile || from(v)
		}
		if hostile {
			t.Errorf("%s: the runner would run %s %v %q from hostile text:\n%s", stream, c.Name, c.Props, c.Data, output)
		}
	}
}

// The model reads commands as the runner does; without this the test
// below could pass by reading nothing.
func TestRunnerModel(t *testing.T) {
	for _, l := range hostileLines {
		cmds, _ := runnerCommands(l + "\n")
		if len(cmds) != 1 || !strings.HasPrefix(cmds[0].Data, pwned) {
			t.Errorf("%q: the model reads %+v, want one hostile command", l, cmds)
		}
	}
	cmds, stopped := runnerCommands("::stop-commands::tok\n::add-mask::x\n##[tok]\n::add-mask::y\n")
	if stopped || len(cmds) != 3 || cmds[1].Name != "tok" || cmds[2].Data != "y" {
		t.Errorf("stop and resume: %+v stopped %v", cmds, stopped)
	}
}

// Text from nodes, builds and pull requests never becomes a workflow
// command: not live progress (a build log), not a node's held log
// (dry-activate output), not the plan or deploy texts (node names,
// errors, dry-activate output), not the event's inputs.
func TestHostileTextNeverRunsAsCommand(t *testing.T) {
	hostile := strings.Join(hostileLines, "\n")
	hostilePlan := func() *plan.Plan {
		p := testPlan()
		p.Nodes[0].DryActivate = &plan.DryActivate{Other: hostileLines, Error: hostile}
		p.Nodes[1].Node = "rpi" + hostileLines[2]
		p.Nodes[1].Error = hostile
		return p
	}
	hostileReport := func() *deploy.Report {
		r := testReport("switch")
		r.Results[1].Node = "rpi" + hostileLines[3]
		r.Results[1].Error = hostile
		r.Results[1].Reason = hostileLines[4]
		r.Results[1].Profiles = []deploy.ProfileResult{{Profile: "system", Error: hostile}, {Profile: hostileLines[5], Status: deploy.Status(hostileLines[6])}}
		return r
	}
	tests := []struct {
		name    string
		event   string
		payload string
		ops     *fakeOps
	}{
		{"plan: build log", "pull_request", "pull_request_opened.json", &fakeOps{plan: testPlan(), say: hostile + "\n"}},
		{"plan: dry-activate output", "pull_request", "pull_request_opened.json", &fakeOps{plan: testPlan(), logs: map[string]string{"frame1": hostile}}},
		{"plan: plan text", "pull_request", "pull_request_opened.json", &fakeOps{plan: hostilePlan()}},
		{"plan: failure", "pull_request", "pull_request_opened.json", &fakeOps{planErr: errorString(hostile)}},
		{"deploy: build log", "push", "push_main.json", &fakeOps{report: testReport("switch"), say: hostile}},
		{"deploy: node log", "push", "push_main.json", &fakeOps{report: testReport("switch"), logs: map[string]string{"rpi": hostile + "\n"}}},
		{"deploy: report", "push", "push_main.json", &fakeOps{report: hostileReport()}},
		{"deploy: failure", "push", "push_main.json", &fakeOps{err: errorString(hostile)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newActionEnv(t, nil, tt.event, tt.payload)
			res := runAction(t, e, tt.ops, nil, 0)
			if !strings.Contains(res.stdout, pwned) {
				t.Fatalf("the hostile text is not in the log at all:\n%s", res.stdout)
			}
			checkNoHostileCommand(t, "stdout", res.stdout)
			checkNoHostileCommand(t, "stderr", res.stderr)
		})
	}

	// The event: a dispatch input that is not a command is quoted in the
	// usage error, on stdout (an annotation) and on stderr.
	t.Run("event input", func(t *testing.T) {
		ev, err := json.Marshal(map[string]any{"inputs": map[string]any{"command": strings.Join(hostileLines, " ")}})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "event.json")
		if err := os.WriteFile(path, ev, 0o644); err != nil {
			t.Fatal(err)
		}
		e := newActionEnv(t, nil, "workflow_dispatch", "")
		e.vars["GITHUB_EVENT_PATH"] = path
		res := runAction(t, e, &fakeOps{}, nil, 0)
		if res.code != app.ExitUsage || !strings.Contains(strings.ToUpper(res.stderr), pwned) {
			t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
		}
		checkNoHostileCommand(t, "stdout", res.stdout)
		checkNoHostileCommand(t, "stderr", res.stderr)
	})
}

type errorString string

func (e errorString) Error() string { return string(e) }
