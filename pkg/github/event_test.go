package github

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestDecide(t *testing.T) {
	tests := []struct {
		event, payload string
		in             Inputs
		edit           func(e *event)
		want           decision
		err            string
	}{
		{event: "pull_request", payload: "pull_request_opened.json",
			want: decision{Command: "plan", PR: 7, HeadSHA: head1SHA}},
		{event: "pull_request", payload: "pull_request_synchronize.json",
			want: decision{Command: "plan", PR: 7, HeadSHA: "b2c3d4e5f60718293a4b5c6d7e8f901234567890"}},
		{event: "pull_request_target", payload: "pull_request_fork.json",
			err: "refusing to run for pull request #8 from a fork under pull_request_target"},
		{event: "pull_request_target", payload: "pull_request_fork.json", in: Inputs{Command: "plan"},
			err: "refusing to run for pull request #8 from a fork under pull_request_target"},
		{event: "pull_request_target", payload: "pull_request_opened.json",
			want: decision{Command: "plan", PR: 7, HeadSHA: head1SHA}},
		{event: "pull_request", payload: "pull_request_opened.json",
			edit: func(e *event) { e.PR.Action = ptr("closed") },
			want: decision{PR: 7, HeadSHA: head1SHA}},
		{event: "pull_request", payload: "pull_request_fork.json", in: Inputs{Command: "rollback"},
			err: "refusing to rollback for a pull request from a fork"},
		{event: "pull_request", payload: "pull_request_fork.json",
			edit: func(e *event) { e.PR.PullRequest.Head.Repo = nil }, // the fork was deleted
			want: decision{Command: "plan", PR: 8, HeadSHA: head1SHA, Fork: true}},
		{event: "push", payload: "push_main.json", want: decision{Command: "deploy"}},
		{event: "push", payload: "push_branch.json", want: decision{}},
		{event: "push", payload: "push_main.json", edit: func(e *event) { e.Push.Deleted = ptr(true) }, want: decision{}},
		{event: "push", payload: "push_main.json", edit: func(e *event) { e.Push.Ref = ptr("refs/tags/v1") }, want: decision{}},
		{event: "push", payload: "push_branch.json", in: Inputs{Command: "deploy"}, want: decision{Command: "deploy"}},
		{event: "workflow_dispatch", payload: "workflow_dispatch_deploy.json",
			want: decision{Command: "deploy", Nodes: []string{"frame1"}}},
		{event: "workflow_dispatch", payload: "workflow_dispatch_rollback.json",
			want: decision{Command: "rollback", Nodes: []string{"frame1", "rpi"}, Generation: 41}},
		{event: "workflow_dispatch", payload: "workflow_dispatch_rollback.json", in: Inputs{Nodes: []string{"web"}, Generation: 3},
			want: decision{Command: "rollback", Nodes: []string{"web"}, Generation: 3}},
		{event: "workflow_dispatch", payload: "workflow_dispatch_deploy.json",
			edit: func(e *event) { delete(e.DispatchInputs, "command") },
			want: decision{Command: "deploy", Nodes: []string{"frame1"}}},
		{event: "workflow_dispatch", payload: "workflow_dispatch_deploy.json",
			edit: func(e *event) { e.DispatchInputs["command"] = "nuke" },
			err:  `workflow_dispatch input command: "nuke" is not one of plan, deploy, rollback`},
		{event: "workflow_dispatch", payload: "workflow_dispatch_rollback.json",
			edit: func(e *event) { e.DispatchInputs["generation"] = "last" },
			err:  `workflow_dispatch input generation: "last" is not a non-negative whole number`},
		{event: "schedule", payload: "",
			err: `command auto does not know what to do on a "schedule" event`},
		{event: "schedule", payload: "", in: Inputs{Command: "plan"}, want: decision{Command: "plan"}},
	}
	for _, tt := range tests {
		name := tt.event + "/" + strings.TrimSuffix(tt.payload, ".json") + "/" + tt.in.Command
		t.Run(name, func(t *testing.T) {
			path := ""
			if tt.payload != "" {
				path = filepath.Join("testdata", tt.payload)
			}
			ev, err := readEvent(tt.event, path)
			if err != nil {
				t.Fatal(err)
			}
			if tt.edit != nil {
				tt.edit(ev)
			}
			in := tt.in
			if in.Command == "" {
				in.Command = CommandAuto
			}
			got, err := decide(in, ev)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got.Reason = ""
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestReadEventErrors(t *testing.T) {
	if _, err := readEvent("push", ""); err == nil || !strings.Contains(err.Error(), "GITHUB_EVENT_PATH is not set") {
		t.Errorf("no path: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "event.json")
	if err := os.WriteFile(bad, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readEvent("pull_request", bad); err == nil {
		t.Error("a broken payload was accepted")
	}
	// Typed workflow_dispatch inputs (booleans) read as strings.
	typed := filepath.Join(t.TempDir(), "dispatch.json")
	if err := os.WriteFile(typed, []byte(`{"inputs":{"dry":true,"generation":41,"nodes":null}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	ev, err := readEvent("workflow_dispatch", typed)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"dry": "true", "generation": "41"}; !reflect.DeepEqual(ev.DispatchInputs, want) {
		t.Errorf("inputs = %v, want %v", ev.DispatchInputs, want)
	}
}

func ptr[T any](v T) *T { return &v }
