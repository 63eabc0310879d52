package github

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	gh "github.com/google/go-github/v60/github"
)

// event is the part of the triggering event the action uses.
type event struct {
	Name string
	// Set for pull_request and pull_request_target.
	PR *gh.PullRequestEvent
	// Set for push.
	Push *gh.PushEvent
	// Set for workflow_dispatch, with its inputs as strings.
	Dispatch       *gh.WorkflowDispatchEvent
	DispatchInputs map[string]string
}

// readEvent decodes the payload at path for the events the action acts on;
// other events are kept by name only.
func readEvent(name, path string) (*event, error) {
	ev := &event{Name: name}
	var target any
	switch name {
	case "pull_request", "pull_request_target":
		ev.PR = new(gh.PullRequestEvent)
		target = ev.PR
	case "push":
		ev.Push = new(gh.PushEvent)
		target = ev.Push
	case "workflow_dispatch":
		ev.Dispatch = new(gh.WorkflowDispatchEvent)
		target = ev.Dispatch
	default:
		return ev, nil
	}
	if path == "" {
		return nil, fmt.Errorf("read %s event: GITHUB_EVENT_PATH is not set", name)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s event: %w", name, err)
	}
	if err := json.Unmarshal(data, target); err != nil {
		return nil, fmt.Errorf("read %s event %s: %w", name, path, err)
	}
	if ev.Dispatch != nil && len(ev.Dispatch.Inputs) > 0 && string(ev.Dispatch.Inputs) != "null" {
		var raw map[string]any
		if err := json.Unmarshal(ev.Dispatch.Inputs, &raw); err != nil {
			return nil, fmt.Errorf("read workflow_dispatch inputs: %w", err)
		}
		ev.DispatchInputs = map[string]string{}
		for k, v := range raw {
			switch v := v.(type) {
			case nil:
			case string:
				ev.DispatchInputs[k] = strings.TrimSpace(v)
			default: // booleans and numbers of typed inputs
				ev.DispatchInputs[k] = fmt.Sprint(v)
			}
		}
	}
	return ev, nil
}

// decision is what the run will do and why.
type decision struct {
	// Command is plan, deploy, rollback, or "" for nothing.
	Command string
	// Reason explains an empty Command (and is logged otherwise).
	Reason string
	// PR is the pull request number a plan comments on; 0 for none.
	PR int
	// Fork is set for a pull request whose head is in another repository:
	// nothing may run on the targets for it.
	Fork bool
	// HeadSHA is the pull request's head commit, what its author pushed.
	HeadSHA string
	// Nodes and Generation come from the workflow_dispatch inputs when
	// the action's own inputs leave them empty.
	Nodes      []string
	Generation int
}

// decide maps the event and the command input to what to run:
// pull_request → plan; push to the default branch → deploy, to any other
// ref → nothing; workflow_dispatch → its "command" input (deploy when it
// has none). An explicit command input wins over the event, except that a
// pull request from a fork can never deploy or roll back, and is refused
// outright under pull_request_target.
func decide(in Inputs, ev *event) (decision, error) {
	d := decision{Command: in.Command, Nodes: in.Nodes, Generation: in.Generation}
	if ev.PR != nil {
		pr := ev.PR.GetPullRequest()
		d.PR = ev.PR.GetNumber()
		if d.PR == 0 {
			d.PR = pr.GetNumber()
		}
		d.HeadSHA = pr.GetHead().GetSHA()
		d.Fork = isFork(pr)
		if d.Fork && ev.Name == "pull_request_target" {
			// pull_request_target runs with the repository's secrets
			// (the deploy key, a writing token) in the environment;
			// whatever tether then evaluates or builds from the fork
			// could read them. pull_request gives a fork's run none.
			return d, fmt.Errorf("refusing to run for pull request #%d from a fork under pull_request_target: that event gives the run this repository's secrets while the code comes from someone else; plan fork pull requests on the pull_request event instead", d.PR)
		}
	}
	if ev.DispatchInputs != nil {
		if len(d.Nodes) == 0 {
			d.Nodes = splitNodes(ev.DispatchInputs["nodes"])
		}
		if d.Generation == 0 {
			g, err := parseCount(ev.DispatchInputs["generation"])
			if err != nil {
				return d, fmt.Errorf("workflow_dispatch input generation: %w", err)
			}
			d.Generation = g
		}
	}

	if d.Command == CommandAuto {
		switch {
		case ev.PR != nil:
			switch action := ev.PR.GetAction(); action {
			case "closed":
				d.Command, d.Reason = "", "the pull request was closed: nothing to plan"
			default:
				d.Command, d.Reason = CommandPlan, fmt.Sprintf("%s (%s): plan", ev.Name, action)
			}
		case ev.Push != nil:
			d.Command, d.Reason = pushCommand(ev.Push)
		case ev.Dispatch != nil:
			c := strings.ToLower(ev.DispatchInputs["command"])
			switch c {
			case "", CommandAuto:
				c = CommandDeploy
			case CommandPlan, CommandDeploy, CommandRollback:
			default:
				return d, fmt.Errorf("workflow_dispatch input command: %q is not one of plan, deploy, rollback", c)
			}
			d.Command, d.Reason = c, "workflow_dispatch: "+c
		default:
			return d, fmt.Errorf("command auto does not know what to do on a %q event: set the command input to plan, deploy or rollback", ev.Name)
		}
	}
	if d.Fork && (d.Command == CommandDeploy || d.Command == CommandRollback) {
		return d, fmt.Errorf("refusing to %s for a pull request from a fork: its code must not reach the nodes", d.Command)
	}
	return d, nil
}

// pushCommand deploys a push to the default branch and explains why any
// other push deploys nothing.
func pushCommand(p *gh.PushEvent) (string, string) {
	ref := p.GetRef()
	def := p.GetRepo().GetDefaultBranch()
	if def == "" {
		def = p.GetRepo().GetMasterBranch()
	}
	switch {
	case p.GetDeleted():
		return "", fmt.Sprintf("push deleted %s: nothing to deploy", ref)
	case def == "":
		return "", fmt.Sprintf("push to %s: the event does not name the default branch, so nothing is deployed", ref)
	case ref != "refs/heads/"+def:
		return "", fmt.Sprintf("push to %s, not to the default branch %s: nothing to deploy", ref, def)
	}
	return CommandDeploy, fmt.Sprintf("push to the default branch %s: deploy", def)
}

// isFork reports whether a pull request's head lives in another repository
// than its base. A head repository that no longer exists counts as a fork.
func isFork(pr *gh.PullRequest) bool {
	head := pr.GetHead().GetRepo().GetFullName()
	base := pr.GetBase().GetRepo().GetFullName()
	return head == "" || !strings.EqualFold(head, base)
}
