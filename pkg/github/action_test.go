package github

import (
	"errors"
	"fmt"
	"github.com/tetherdeploy/tether/internal/app"
	"github.com/tetherdeploy/tether/pkg/agent"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/pkg/deploy"
	"github.com/tetherdeploy/tether/pkg/report"
)

const prefix = "/api-v3"

// planIncomplete is the exit code of testPlan: its rpi was unreachable, so
// the plan does not say what a deploy would do there.
const planIncomplete = app.ExitFailed

func TestPlanCommentCreatedThenUpdated(t *testing.T) {
	f := newFakeGitHub(t, prefix)
	ops := &fakeOps{plan: testPlan()}

	e := newActionEnv(t, f, "pull_request", "pull_request_opened.json")
	res := runAction(t, e, ops, f, 0)
	if res.code != planIncomplete {
		t.Fatalf("exit code %d, stdout:\n%s", res.code, res.stdout)
	}
	want := "GET /api-v3/repos/example/fleet/issues/7/comments?page=1&per_page=100\n" +
		"POST /api-v3/repos/example/fleet/issues/7/comments"
	reqs := f.requests()
	if got := paths(reqs); got != want {
		t.Fatalf("first run requests:\n%s\nwant:\n%s", got, want)
	}
	body := reqs[1].Body["body"].(string)
	mark := "<!-- tether:plan Deploy/tether -->\n"
	if !strings.HasPrefix(body, mark) {
		t.Errorf("comment does not start with the marker line %q:\n%s", mark, body)
	}
	for _, s := range []string{"### tether plan", "<code>frame1</code>", "<code>openssl</code>", "unreachable", "for a1b2c3d", "[run 4242](https://github.example/example/fleet/actions/runs/4242)"} {
		if !strings.Contains(body, s) {
			t.Errorf("comment lacks %q:\n%s", s, body)
		}
	}
	if len(body) > report.DefaultCommentLimit {
		t.Errorf("comment is %d bytes", len(body))
	}
	if len(ops.plans) != 1 || ops.plans[0].DryActivate || ops.plans[0].NoTargets {
		t.Errorf("plan requests = %+v, want one without dry-activate, with target commands allowed", ops.plans)
	}

	// The next push edits the same comment.
	e = newActionEnv(t, f, "pull_request", "pull_request_synchronize.json")
	res = runAction(t, e, ops, f, 0)
	if res.code != planIncomplete {
		t.Fatalf("second run: exit code %d", res.code)
	}
	comments := f.commentsOn(7)
	want = "GET /api-v3/repos/example/fleet/issues/7/comments?page=1&per_page=100\n" +
		fmt.Sprintf("PATCH /api-v3/repos/example/fleet/issues/comments/%d", comments[0].ID)
	if got := paths(f.requests()); got != want {
		t.Fatalf("second run requests:\n%s\nwant:\n%s", got, want)
	}
	if len(comments) != 1 {
		t.Fatalf("%d comments after two runs, want 1", len(comments))
	}
	if !strings.Contains(comments[0].Body, "for b2c3d4e") {
		t.Errorf("the comment was not updated for the new head:\n%s", comments[0].Body)
	}
}

func TestPlanCommentFoundOnLaterPage(t *testing.T) {
	f := newFakeGitHub(t, prefix)
	bob := fakeUser{Login: "bob", ID: 2, Type: "User"}
	f.pageSize = 3
	for i := range 4 {
		f.addComment(7, bob, fmt.Sprintf("looks good %d", i))
	}
	// A user quoting the marker inside a comment is not ours.
	f.addComment(7, bob, "why does this say <!-- tether:plan Deploy/tether --> ?")
	// Another job's comment is not ours either.
	f.addComment(7, actionsBotUser, "<!-- tether:plan Other/tether -->\nother plan")
	ours := f.addComment(7, actionsBotUser, "<!-- tether:plan Deploy/tether -->\nold plan")
	f.addComment(7, bob, "one more")

	e := newActionEnv(t, f, "pull_request", "pull_request_synchronize.json")
	res := runAction(t, e, &fakeOps{plan: testPlan()}, f, 0)
	if res.code != planIncomplete {
		t.Fatalf("exit code %d", res.code)
	}
	want := "GET /api-v3/repos/example/fleet/issues/7/comments?page=1&per_page=100\n" +
		"GET /api-v3/repos/example/fleet/issues/7/comments?page=2&per_page=100\n" +
		"GET /api-v3/repos/example/fleet/issues/7/comments?page=3&per_page=100\n" +
		fmt.Sprintf("PATCH /api-v3/repos/example/fleet/issues/comments/%d", ours)
	if got := paths(f.requests()); got != want {
		t.Fatalf("requests:\n%s\nwant:\n%s", got, want)
	}
	for _, c := range f.commentsOn(7) {
		switch {
		case c.ID == ours && !strings.Contains(c.Body, "### tether plan"):
			t.Errorf("our comment was not updated: %q", c.Body)
		case c.ID != ours && strings.Contains(c.Body, "### tether plan"):
			t.Errorf("comment %d by %s was overwritten", c.ID, c.User)
		}
	}
}

func TestPlanCommentRecreatedAfterDeletion(t *testing.T) {
	f := newFakeGitHub(t, prefix)
	ops := &fakeOps{plan: testPlan()}
	runAction(t, newActionEnv(t, f, "pull_request", "pull_request_opened.json"), ops, f, 0)
	f.requests()
	f.deleteComments(7)

	res := runAction(t, newActionEnv(t, f, "pull_request", "pull_request_synchronize.json"), ops, f, 0)
	want := "GET /api-v3/repos/example/fleet/issues/7/comments?page=1&per_page=100\n" +
		"POST /api-v3/repos/example/fleet/issues/7/comments"
	if got := paths(f.requests()); got != want {
		t.Fatalf("requests after the comment was deleted:\n%s\nwant:\n%s", got, want)
	}
	if n := len(f.commentsOn(7)); n != 1 || res.code != planIncomplete {
		t.Errorf("%d comments, exit code %d; want 1 and 1", n, res.code)
	}
}

// A comment someone else wrote with our marker is never edited, although
// the token could (GitHub lets a token with write access edit anyone's
// comment): tether would otherwise write its plan under their name, where
// they can change it afterwards. A new comment is made instead.
func TestPlanCommentNeverEditsAnotherUsersComment(t *testing.T) {
	mallory := fakeUser{Login: "mallory", ID: 666, Type: "User"}
	otherApp := fakeUser{Login: "other-app[bot]", ID: 777, Type: "Bot"}
	alice := fakeUser{Login: "alice", ID: 1001, Type: "User"}
	const planMark = "<!-- tether:plan Deploy/tether -->"
	tests := []struct {
		name  string
		token *fakeUser // nil: the run's own token, the Actions bot
		seed  []fakeUser
		// wantUser is GET /user: asked only for a personal token, and
		// only once a comment carries the marker.
		wantUser bool
	}{
		{"actions token, a user's comment", nil, []fakeUser{mallory}, false},
		{"actions token, another app's comment", nil, []fakeUser{otherApp}, false},
		{"personal token, another user's comment", &alice, []fakeUser{mallory, actionsBotUser}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeGitHub(t, prefix)
			f.user = tt.token
			var foreign []int64
			for _, u := range tt.seed {
				foreign = append(foreign, f.addComment(7, u, planMark+"\nfake plan: no changes, merge away"))
			}
			e := newActionEnv(t, f, "pull_request", "pull_request_opened.json")
			if tt.token != nil {
				f.token = patToken
				e.vars[InputEnv("github-token")] = patToken
			}
			res := runAction(t, e, &fakeOps{plan: testPlan()}, f, 0)
			want := "GET /api-v3/repos/example/fleet/issues/7/comments?page=1&per_page=100\n"
			if tt.wantUser {
				want += "GET /api-v3/user\n"
			}
			want += "POST /api-v3/repos/example/fleet/issues/7/comments"
			if got := paths(f.requests()); got != want {
				t.Fatalf("requests:\n%s\nwant:\n%s", got, want)
			}
			comments := f.commentsOn(7)
			for i, id := range foreign {
				if comments[i].ID != id || !strings.Contains(comments[i].Body, "fake plan") {
					t.Errorf("comment %d by %s was changed: %q", id, comments[i].User, comments[i].Body)
				}
			}
			if last := comments[len(comments)-1]; !strings.Contains(last.Body, "### tether plan") {
				t.Errorf("no new plan comment: %+v", last)
			}
			if res.code != planIncomplete {
				t.Errorf("exit code %d", res.code)
			}
		})
	}
}

// With a personal token, the comment the token's user wrote is edited,
// found by user ID.
func TestPlanCommentEditedByPersonalToken(t *testing.T) {
	f := newFakeGitHub(t, prefix)
	alice := fakeUser{Login: "alice", ID: 1001, Type: "User"}
	f.user, f.token = &alice, patToken
	f.addComment(7, fakeUser{Login: "alice", ID: 999, Type: "User"}, "<!-- tether:plan Deploy/tether -->\nnot hers: a user who had her name before")
	ours := f.addComment(7, fakeUser{Login: "alice-renamed", ID: 1001, Type: "User"}, "<!-- tether:plan Deploy/tether -->\nold plan")
	e := newActionEnv(t, f, "pull_request", "pull_request_synchronize.json")
	e.vars[InputEnv("github-token")] = patToken
	runAction(t, e, &fakeOps{plan: testPlan()}, f, 0)
	want := "GET /api-v3/repos/example/fleet/issues/7/comments?page=1&per_page=100\n" +
		"GET /api-v3/user\n" +
		fmt.Sprintf("PATCH /api-v3/repos/example/fleet/issues/comments/%d", ours)
	if got := paths(f.requests()); got != want {
		t.Fatalf("requests:\n%s\nwant:\n%s", got, want)
	}
}

func TestForkPullRequestRunsNothingOnTargets(t *testing.T) {
	f := newFakeGitHub(t, prefix)
	ops := &fakeOps{plan: testPlan()}
	e := newActionEnv(t, f, "pull_request", "pull_request_fork.json")
	e.vars[InputEnv("dry-activate")] = "true"
	res := runAction(t, e, ops, f, 0)
	if len(ops.plans) != 1 {
		t.Fatalf("plan requests: %+v", ops.plans)
	}
	if req := ops.plans[0]; req.DryActivate || !req.NoTargets {
		t.Errorf("fork plan request DryActivate=%v NoTargets=%v, want false, true", req.DryActivate, req.NoTargets)
	}
	if !strings.Contains(res.stdout, "::warning title=dry-activate refused::") {
		t.Errorf("no warning that dry-activate was refused:\n%s", res.stdout)
	}
	comments := f.commentsOn(8)
	if len(comments) != 1 || !strings.Contains(comments[0].Body, "comes from a fork, so tether ran nothing on the nodes") {
		t.Errorf("fork comment does not say so: %+v", comments)
	}
	if !strings.Contains(res.summary, "comes from a fork") {
		t.Error("the job summary does not say the plan ran without the nodes")
	}

	// A fork can never deploy, whatever the command input says.
	e.vars[InputEnv("command")] = "deploy"
	res = runAction(t, e, &fakeOps{}, f, 0)
	if res.code != app.ExitUsage || !strings.Contains(res.stdout, "refusing to deploy for a pull request from a fork") {
		t.Errorf("deploy from a fork: exit %d\n%s", res.code, res.stdout)
	}
}

// Under pull_request_target the run holds the repository's secrets; a
// fork's pull request is refused before anything runs: no plan (so no nix
// on the fork's code with the secrets in its environment), no node
// contacted, no API call.
func TestForkUnderPullRequestTargetIsRefused(t *testing.T) {
	f := newFakeGitHub(t, prefix)
	for _, command := range []string{"auto", "plan"} {
		e := newActionEnv(t, f, "pull_request_target", "pull_request_fork.json")
		e.vars[InputEnv("command")] = command
		e.vars[InputEnv("ssh-private-key")] = testKey(t)
		ops := &fakeOps{} // panics on any operation
		res := runAction(t, e, ops, f, 0)
		if res.code != app.ExitUsage {
			t.Errorf("command %s: exit code %d, want %d", command, res.code, app.ExitUsage)
		}
		if len(ops.plans)+len(ops.deploys)+len(ops.rollbacks) != 0 {
			t.Errorf("command %s: operations were asked for: %+v", command, ops)
		}
		if reqs := f.requests(); len(reqs) != 0 {
			t.Errorf("command %s: API requests:\n%s", command, paths(reqs))
		}
		if !strings.Contains(res.stdout, "from a fork under pull_request_target") || !strings.Contains(res.stderr, "plan fork pull requests on the pull_request event") {
			t.Errorf("command %s: the refusal does not say why:\n%s\n%s", command, res.stdout, res.stderr)
		}
		if r := resultOf(t, res); r.Command != "none" || r.Plan != nil {
			t.Errorf("command %s: result %+v", command, r)
		}
	}
}

func TestPushToMainDeploys(t *testing.T) {
	f := newFakeGitHub(t, prefix)
	f.pulls[mainSHA] = []map[string]any{
		{"number": 7, "state": "closed", "merged_at": "2024-03-01T12:29:00Z", "merge_commit_sha": mainSHA},
		{"number": 5, "state": "open", "merged_at": nil, "merge_commit_sha": "ffff"}, // the commit is only in its branch
	}
	ops := &fakeOps{report: testReport("switch"), selected: []string{"frame1", "rpi"}, logs: map[string]string{
		"frame1": "copying 3 paths\nactivating\n",
		"rpi":    "copying 9 paths\nno confirmation: rolling back\n",
	}}
	e := newActionEnv(t, f, "push", "push_main.json")
	e.vars[InputEnv("nodes")] = "frame1 rpi"
	res := runAction(t, e, ops, f, 0)

	if res.code != app.ExitRolledBack {
		t.Errorf("exit code %d, want %d (a node rolled back)", res.code, app.ExitRolledBack)
	}
	if len(ops.deploys) != 1 {
		t.Fatalf("deploy requests: %d", len(ops.deploys))
	}
	req := ops.deploys[0]
	if !reflect.DeepEqual(req.Nodes, []string{"frame1", "rpi"}) || req.Action != "" ||
		req.Flake != "." || req.Who != "github:example/fleet run 4242 by alice" {
		t.Errorf("deploy request: %+v", req.Target)
	}

	base := "/api-v3/repos/example/fleet"
	reqs := f.requests()
	var got []string
	for _, r := range reqs {
		got = append(got, r.String())
	}
	want := []string{
		"POST " + base + "/deployments",
		"POST " + base + "/deployments/1/statuses",
		"POST " + base + "/deployments",
		"POST " + base + "/deployments/2/statuses",
		"POST " + base + "/deployments/1/statuses",
		"POST " + base + "/deployments/2/statuses",
		"GET " + base + "/commits/" + mainSHA + "/pulls?per_page=100",
		"GET " + base + "/issues/7/comments?page=1&per_page=100",
		"POST " + base + "/issues/7/comments",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	wantDep := map[string]any{
		"ref": mainSHA, "task": "deploy", "auto_merge": false, "required_contexts": []any{},
		"environment": "production/frame1", "description": "tether deploy of frame1",
		"transient_environment": false, "payload": map[string]any{"node": "frame1"},
	}
	if !reflect.DeepEqual(reqs[0].Body, wantDep) {
		t.Errorf("deployment request:\n%#v\nwant:\n%#v", reqs[0].Body, wantDep)
	}
	logURL := "https://github.example/example/fleet/actions/runs/4242"
	wantStatuses := []map[string]any{
		{"state": "in_progress", "description": "deploying c3d4e5f", "environment": "production/frame1", "log_url": logURL},
		{"state": "in_progress", "description": "deploying c3d4e5f", "environment": "production/rpi", "log_url": logURL},
		{"state": "success", "description": "deployed generation 42", "environment": "production/frame1", "log_url": logURL},
		{"state": "failure", "description": "failed and rolled back: no confirmation within 30s", "environment": "production/rpi", "log_url": logURL},
	}
	for i, r := range []apiRequest{reqs[1], reqs[3], reqs[4], reqs[5]} {
		if !reflect.DeepEqual(r.Body, wantStatuses[i]) {
			t.Errorf("status %d:\n%#v\nwant:\n%#v", i, r.Body, wantStatuses[i])
		}
	}
	comment := reqs[8].Body["body"].(string)
	for _, s := range []string{"<!-- tether:deploy Deploy/tether -->\n", "### tether deploy: 1 deployed, 1 failed and rolled back", "environment <code>production</code>", "<code>rpi</code>"} {
		if !strings.Contains(comment, s) {
			t.Errorf("merged pull request comment lacks %q:\n%s", s, comment)
		}
	}

	wantOut := map[string]string{"deployed": "frame1", "rolled-back": "rpi", "failed": ""}
	for k, v := range wantOut {
		if res.outputs[k] != v {
			t.Errorf("output %s = %q, want %q", k, res.outputs[k], v)
		}
	}
	r := resultOf(t, res)
	if r.Command != "deploy" || r.Event != "push" || r.ExitCode != app.ExitRolledBack || r.Report == nil || len(r.Report.Results) != 2 {
		t.Errorf("result output: %+v", r)
	}
	if !strings.Contains(res.summary, "### tether deploy: 1 deployed, 1 failed and rolled back") {
		t.Errorf("job summary:\n%s", res.summary)
	}
	for _, s := range []string{
		"::error title=tether deploy%3A rpi rolled-back::no confirmation within 30s: the node stopped answering\n",
		"NODE    STATUS",
	} {
		if !strings.Contains(res.stdout, s) {
			t.Errorf("log lacks %q:\n%s", s, res.stdout)
		}
	}
	groups := logGroups(t, res.stdout)
	for title, want := range map[string]string{
		"frame1: deployed": "copying 3 paths\nactivating\n── deployed: deployed generation 42\n",
		"rpi: rolled-back": "copying 9 paths\nno confirmation: rolling back\n── rolled-back: failed and rolled back",
	} {
		if !strings.HasPrefix(groups[title], want) {
			t.Errorf("log group %q:\n%s\nwant it to start with:\n%s", title, groups[title], want)
		}
	}
}

// logGroups reads the job log as the runner shows it: each group's lines
// by title, without the stop-commands lines the runner consumes.
func logGroups(t *testing.T, log string) map[string]string {
	t.Helper()
	groups := map[string]string{}
	title, token := "", ""
	for _, line := range strings.Split(log, "\n") {
		switch {
		case token == "" && strings.HasPrefix(line, "::stop-commands::"):
			token = strings.TrimPrefix(line, "::stop-commands::")
		case token != "" && line == "::"+token+"::":
			token = ""
		case token == "" && strings.HasPrefix(line, "::group::"):
			title = strings.TrimPrefix(line, "::group::")
		case token == "" && line == "::endgroup::":
			if title == "" {
				t.Error("::endgroup:: without a group")
			}
			title = ""
		case title != "":
			groups[title] += line + "\n"
		}
	}
	if title != "" || token != "" {
		t.Errorf("group %q or commands (%q) left open", title, token)
	}
	return groups
}

func TestPushToOtherBranchDoesNothing(t *testing.T) {
	f := newFakeGitHub(t, prefix)
	e := newActionEnv(t, f, "push", "push_branch.json")
	res := runAction(t, e, &fakeOps{}, f, 0)
	if res.code != 0 {
		t.Errorf("exit code %d", res.code)
	}
	if reqs := f.requests(); len(reqs) != 0 {
		t.Errorf("API requests for a push to a branch:\n%s", paths(reqs))
	}
	if !strings.Contains(res.stdout, "::notice title=tether::push to refs/heads/bump, not to the default branch main: nothing to deploy") {
		t.Errorf("the log does not say why nothing ran:\n%s", res.stdout)
	}
	if r := resultOf(t, res); r.Command != "none" || r.Reason == "" {
		t.Errorf("result: %+v", r)
	}
	if res.outputs["deployed"] != "" || res.outputs["failed"] != "" {
		t.Errorf("outputs: %v", res.outputs)
	}
}

func TestDispatchDeploy(t *testing.T) {
	f := newFakeGitHub(t, prefix)
	ops := &fakeOps{report: &deploy.Report{Action: "switch", Results: []deploy.Result{{Node: "frame1", Status: deploy.StatusDeployed, Generation: 43}}}}
	res := runAction(t, newActionEnv(t, f, "workflow_dispatch", "workflow_dispatch_deploy.json"), ops, f, 0)
	if res.code != 0 {
		t.Fatalf("exit code %d\n%s", res.code, res.stdout)
	}
	if len(ops.deploys) != 1 || !reflect.DeepEqual(ops.deploys[0].Nodes, []string{"frame1"}) {
		t.Fatalf("deploy requests: %+v", ops.deploys)
	}
	// Selected was never called: the deployment is created with its
	// final status; no pull request is looked for.
	want := "POST /api-v3/repos/example/fleet/deployments\nPOST /api-v3/repos/example/fleet/deployments/1/statuses"
	reqs := f.requests()
	if got := paths(reqs); got != want {
		t.Fatalf("requests:\n%s\nwant:\n%s", got, want)
	}
	if s := reqs[1].Body["state"]; s != "success" {
		t.Errorf("state %v", s)
	}
	if res.outputs["deployed"] != "frame1" {
		t.Errorf("outputs: %v", res.outputs)
	}
}

func TestDispatchRollback(t *testing.T) {
	f := newFakeGitHub(t, prefix)
	ops := &fakeOps{report: testReport("rollback"), selected: []string{"frame1", "rpi"}}
	res := runAction(t, newActionEnv(t, f, "workflow_dispatch", "workflow_dispatch_rollback.json"), ops, f, 0)
	if len(ops.rollbacks) != 1 {
		t.Fatalf("rollback requests: %+v", ops.rollbacks)
	}
	if rb := ops.rollbacks[0]; rb.Generation != 41 || !reflect.DeepEqual(rb.Nodes, []string{"frame1", "rpi"}) {
		t.Errorf("rollback request: generation %d nodes %q", rb.Generation, rb.Nodes)
	}
	reqs := f.requests()
	if len(reqs) != 6 {
		t.Fatalf("requests:\n%s", paths(reqs))
	}
	if task := reqs[0].Body["task"]; task != "deploy:rollback" {
		t.Errorf("task %v", task)
	}
	if d := reqs[4].Body["description"]; d != "rolled back to generation 41" {
		t.Errorf("frame1's final status says %q", d)
	}
	if d := reqs[5].Body["description"]; d != "rollback failed, node back on its previous system: activation of generation 41 failed: exit status 2" {
		t.Errorf("rpi's final status says %q", d)
	}
	if res.outputs["rolled-back"] != "frame1" || res.outputs["failed"] != "rpi" || res.outputs["deployed"] != "" {
		t.Errorf("outputs: %v", res.outputs)
	}
	if !strings.Contains(res.summary, "### tether rollback: 1 rolled back, 1 rollback failed") ||
		!strings.Contains(res.summary, "rolled back to generation 41") {
		t.Errorf("summary:\n%s", res.summary)
	}
	if res.code != app.ExitRolledBack {
		t.Errorf("exit code %d", res.code)
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	f := newFakeGitHub(t, prefix)
	key := testKey(t)
	keyLines := strings.Split(strings.TrimSpace(key), "\n")
	ops := &fakeOps{
		report:   testReport("switch"),
		selected: []string{"frame1"},
		say:      "using key " + keyLines[1] + "\n",
		logs:     map[string]string{"frame1": "oops: " + keyLines[2] + "\n"},
	}
	// A node's error and rollback reason quote the key and the token; the
	// merged pull request's comment renders both (the reason as Markdown
	// text, where the token's "_" is escaped).
	ops.report.Results[1].Error = "auth failed with\n" + key + "token " + testToken
	ops.report.Results[1].Reason = "token " + testToken
	f.pulls[mainSHA] = []map[string]any{{"number": 7, "merged_at": "2024-03-01T12:29:00Z", "merge_commit_sha": mainSHA}}
	e := newActionEnv(t, f, "push", "push_main.json")
	e.vars[InputEnv("ssh-private-key")] = key
	res := runAction(t, e, ops, f, 0)

	if k := ops.deploys[0].Keys; len(k) != 1 || string(k[0]) != key {
		t.Error("the operations did not get the key as given")
	}
	// The masks come first, one per line of the key and the token.
	lines := strings.Split(res.stdout, "\n")
	masks := 0
	for _, l := range lines {
		if !strings.HasPrefix(l, "::add-mask::") {
			break
		}
		masks++
	}
	if masks != len(keyLines)+1 {
		t.Errorf("%d masks before the first other line, want %d (every key line and the token):\n%s", masks, len(keyLines)+1, strings.Join(lines[:min(len(lines), masks+2)], "\n"))
	}
	var comments string
	for _, c := range f.commentsOn(7) {
		comments += c.Body
	}
	var statuses string
	for _, r := range f.requests() {
		statuses += fmt.Sprint(r.Body)
	}
	places := map[string]string{
		"stdout":   strings.Join(lines[masks:], "\n"),
		"stderr":   res.stderr,
		"outputs":  fmt.Sprint(res.outputs),
		"summary":  res.summary,
		"comments": comments,
		"api":      statuses,
	}
	if !strings.Contains(comments, "auth failed with") || !strings.Contains(comments, "token ***") {
		t.Errorf("the merged pull request's comment does not show the error, redacted:\n%s", comments)
	}
	for where, text := range places {
		for _, l := range append(keyLines, testToken, report.MarkdownText(testToken)) {
			if len(l) >= minSecretLen && strings.Contains(text, l) {
				t.Errorf("%s shows a secret line %q", where, l)
			}
		}
	}
	if !strings.Contains(places["stdout"], "using key ***") {
		t.Error("the progress line was not printed with the key redacted")
	}
}

// A node's rollback reason and its profiles' errors reach the merged pull
// request's comment as text: no live mention of a user or a team, no
// link, no HTML.
func TestDeployCommentMentionsAndLinksStayText(t *testing.T) {
	f := newFakeGitHub(t, prefix)
	f.pulls[mainSHA] = []map[string]any{{"number": 7, "merged_at": "2024-03-01T12:29:00Z", "merge_commit_sha": mainSHA}}
	hostile := "@octocat @org/team see [the fix](https://evil.example/fix) https://evil.example <a href=https://evil.example>x</a>"
	rep := testReport("switch")
	rep.Results[1].Reason = "rolled back by " + hostile
	rep.Results[1].Profiles = []deploy.ProfileResult{
		{Profile: "system", Status: deploy.StatusRolledBack, Error: "units failed: " + hostile},
		{Profile: "home", Status: deploy.StatusSkipped, Error: hostile},
	}
	runAction(t, newActionEnv(t, f, "push", "push_main.json"), &fakeOps{report: rep}, f, 0)
	comments := f.commentsOn(7)
	if len(comments) != 1 {
		t.Fatalf("%d comments", len(comments))
	}
	body := comments[0].Body
	if !strings.Contains(body, "rolled back by") || !strings.Contains(body, "units failed:") {
		t.Fatalf("the reason or the profile error is not shown:\n%s", body)
	}
	unescaped := strings.ReplaceAll(body, `\<`, "")
	for _, live := range []string{"@octocat", "@org/team", "](https://evil", "https://evil", "<a href"} {
		if strings.Contains(unescaped, live) {
			t.Errorf("the comment carries %q live:\n%s", live, body)
		}
	}
}

func TestOutputsCannotBeForged(t *testing.T) {
	f := newFakeGitHub(t, prefix)
	rep := testReport("switch")
	rep.Results[1].Error = "boom\n_GitHubActionsFileCommandDelimeter_\ndeployed<<EOF\nrpi web db\nEOF\nfailed="
	res := runAction(t, newActionEnv(t, f, "push", "push_main.json"), &fakeOps{report: rep}, f, 0)
	if len(res.outputs) != 4 {
		t.Errorf("outputs %v, want exactly result, deployed, rolled-back, failed", res.outputs)
	}
	if res.outputs["deployed"] != "frame1" || res.outputs["rolled-back"] != "rpi" {
		t.Errorf("outputs: %v", res.outputs)
	}
	if r := resultOf(t, res); r.Report.Results[1].Error != rep.Results[1].Error {
		t.Errorf("the error did not survive the outputs file: %q", r.Report.Results[1].Error)
	}
}

// Reporting failures never change what the deploy did or the exit code.
func TestAPIFailuresDoNotChangeTheOutcome(t *testing.T) {
	baseline := func(t *testing.T) runResult {
		f := newFakeGitHub(t, prefix)
		f.pulls[mainSHA] = []map[string]any{{"number": 7, "merged_at": "2024-03-01T12:29:00Z", "merge_commit_sha": mainSHA}}
		return runAction(t, newActionEnv(t, f, "push", "push_main.json"), &fakeOps{report: testReport("switch"), selected: []string{"frame1", "rpi"}}, f, 0)
	}(t)

	rateLimit := http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Limit": {"1000"}, "X-Ratelimit-Reset": {fmt.Sprint(time.Now().Add(time.Hour).Unix())}}
	tests := []struct {
		name    string
		setup   func(f *fakeGitHub, e *actionEnv)
		maxReqs int
		warning string
	}{
		{"server errors", func(f *fakeGitHub, e *actionEnv) {
			f.fail = func(*http.Request) (int, http.Header) { return http.StatusInternalServerError, nil }
		}, maxTransientFailures, "500 Internal Server Error"},
		{"bad gateway then ok", func(f *fakeGitHub, e *actionEnv) {
			n := 0
			f.fail = func(*http.Request) (int, http.Header) {
				n++
				if n == 1 {
					return http.StatusBadGateway, nil
				}
				return 0, nil
			}
		}, 100, "502 Bad Gateway"},
		{"forbidden", func(f *fakeGitHub, e *actionEnv) {
			f.fail = func(*http.Request) (int, http.Header) { return http.StatusForbidden, nil }
		}, 100, "403 Forbidden"},
		{"rate limited", func(f *fakeGitHub, e *actionEnv) {
			f.fail = func(*http.Request) (int, http.Header) { return http.StatusForbidden, rateLimit }
		}, 1, "the API rate limit was reached"},
		{"unauthorized", func(f *fakeGitHub, e *actionEnv) {
			f.fail = func(*http.Request) (int, http.Header) { return http.StatusUnauthorized, nil }
		}, 1, "the token was refused"},
		{"slow server", func(f *fakeGitHub, e *actionEnv) {
			f.delay = time.Minute
		}, maxTransientFailures, "no answer in time"},
		{"no token", func(f *fakeGitHub, e *actionEnv) {
			delete(e.vars, InputEnv("github-token"))
		}, 0, "no github-token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeGitHub(t, prefix)
			f.pulls[mainSHA] = []map[string]any{{"number": 7, "merged_at": "2024-03-01T12:29:00Z", "merge_commit_sha": mainSHA}}
			e := newActionEnv(t, f, "push", "push_main.json")
			tt.setup(f, e)
			ops := &fakeOps{report: testReport("switch"), selected: []string{"frame1", "rpi"}}
			res := runAction(t, e, ops, f, 200*time.Millisecond)
			if res.code != baseline.code {
				t.Errorf("exit code %d, want %d as with a working API", res.code, baseline.code)
			}
			if len(ops.deploys) != 1 {
				t.Errorf("%d deploys", len(ops.deploys))
			}
			for _, k := range []string{"deployed", "rolled-back", "failed", "result"} {
				if res.outputs[k] != baseline.outputs[k] {
					t.Errorf("output %s = %q, want %q", k, res.outputs[k], baseline.outputs[k])
				}
			}
			if res.summary != baseline.summary {
				t.Errorf("job summary differs:\n%s\nwant:\n%s", res.summary, baseline.summary)
			}
			if n := len(f.requests()); n > tt.maxReqs {
				t.Errorf("%d API requests, want at most %d once the API is known to fail", n, tt.maxReqs)
			}
			if !strings.Contains(res.stdout, "::warning title=GitHub API::") || !strings.Contains(res.stdout, tt.warning) {
				t.Errorf("no warning mentioning %q:\n%s", tt.warning, res.stdout)
			}
			if strings.Contains(res.stdout, "::error title=GitHub") {
				t.Error("an API failure was reported as an error")
			}
		})
	}
}

func TestAPIV1ServerSkipsDeployments(t *testing.T) {
	f := newFakeGitHub(t, "/api/v1")
	f.noDeployments = true
	f.pulls[mainSHA] = []map[string]any{{"number": 7, "merged": true, "merge_commit_sha": mainSHA}}
	ops := &fakeOps{report: testReport("switch"), selected: []string{"frame1", "rpi"}}
	res := runAction(t, newActionEnv(t, f, "push", "push_main.json"), ops, f, 0)
	want := "GET /api/v1/repos/example/fleet/commits/" + mainSHA + "/pull\n" +
		"GET /api/v1/repos/example/fleet/issues/7/comments?page=1&per_page=100\n" +
		"POST /api/v1/repos/example/fleet/issues/7/comments"
	if got := paths(f.requests()); got != want {
		t.Fatalf("requests:\n%s\nwant:\n%s", got, want)
	}
	if n := strings.Count(res.stdout, "::notice title=Deployments::"); n != 1 {
		t.Errorf("%d notices about deployments, want 1:\n%s", n, res.stdout)
	}
	if strings.Contains(res.stdout, "::warning") {
		t.Errorf("warnings on an /api/v1 run:\n%s", res.stdout)
	}
	if res.code != app.ExitRolledBack || res.outputs["deployed"] != "frame1" {
		t.Errorf("exit %d outputs %v", res.code, res.outputs)
	}

	// A direct push (no pull request: 404) is not a failure either.
	delete(f.pulls, mainSHA)
	res = runAction(t, newActionEnv(t, f, "push", "push_main.json"), ops, f, 0)
	if got := paths(f.requests()); got != "GET /api/v1/repos/example/fleet/commits/"+mainSHA+"/pull" {
		t.Errorf("requests:\n%s", got)
	}
	if strings.Contains(res.stdout, "::warning") {
		t.Errorf("warning for a push without a pull request:\n%s", res.stdout)
	}
}

// A GitHub server without deployments for this repository (404) is told
// once and not asked again.
func TestDeploymentsNotFoundSkipsTheRest(t *testing.T) {
	f := newFakeGitHub(t, prefix)
	f.noDeployments = true
	res := runAction(t, newActionEnv(t, f, "push", "push_main.json"), &fakeOps{report: testReport("switch"), selected: []string{"frame1", "rpi"}}, f, 0)
	want := "POST /api-v3/repos/example/fleet/deployments\n" +
		"GET /api-v3/repos/example/fleet/commits/" + mainSHA + "/pulls?per_page=100"
	if got := paths(f.requests()); got != want {
		t.Fatalf("requests:\n%s\nwant:\n%s", got, want)
	}
	if n := strings.Count(res.stdout, "::notice title=Deployments::"); n != 1 {
		t.Errorf("%d notices, want 1", n)
	}
}

func TestDryActivateRecordsNoDeployment(t *testing.T) {
	f := newFakeGitHub(t, prefix)
	ops := &fakeOps{report: &deploy.Report{Action: "dry-activate", Results: []deploy.Result{{Node: "frame1", Status: deploy.StatusDryActivated}}}, selected: []string{"frame1"}}
	e := newActionEnv(t, f, "workflow_dispatch", "workflow_dispatch_deploy.json")
	e.vars[InputEnv("dry-activate")] = "true"
	res := runAction(t, e, ops, f, 0)
	if ops.deploys[0].Action != agent.ActionDryActivate {
		t.Error("the deploy was not asked to dry-activate")
	}
	if reqs := f.requests(); len(reqs) != 0 {
		t.Errorf("requests for a dry activation:\n%s", paths(reqs))
	}
	if res.code != 0 || res.outputs["deployed"] != "frame1" {
		t.Errorf("exit %d outputs %v", res.code, res.outputs)
	}
}

func TestPlanFailure(t *testing.T) {
	f := newFakeGitHub(t, prefix)
	ops := &fakeOps{planErr: errors.New("evaluate flake: error: attribute 'frame1' missing\n```\n</details>")}
	res := runAction(t, newActionEnv(t, f, "pull_request", "pull_request_opened.json"), ops, f, 0)
	if res.code != app.ExitFailed {
		t.Errorf("exit code %d", res.code)
	}
	comments := f.commentsOn(7)
	if len(comments) != 1 || !strings.Contains(comments[0].Body, "The plan failed:\n\n````text\nevaluate flake") {
		t.Errorf("comments: %+v", comments)
	}
	if !strings.Contains(res.stdout, "::error title=tether plan failed::evaluate flake: error: attribute 'frame1' missing%0A") {
		t.Errorf("no error annotation:\n%s", res.stdout)
	}
	if r := resultOf(t, res); r.Command != "plan" || r.Error == "" || r.ExitCode != app.ExitFailed {
		t.Errorf("result: %+v", r)
	}
}

func TestDeployErrorWithoutReport(t *testing.T) {
	f := newFakeGitHub(t, prefix)
	ops := &fakeOps{err: errors.New("load fleet: tether.toml:3: unknown key"), selected: []string{"frame1"}}
	res := runAction(t, newActionEnv(t, f, "push", "push_main.json"), ops, f, 0)
	if res.code != app.ExitFailed {
		t.Errorf("exit code %d", res.code)
	}
	reqs := f.requests()
	if len(reqs) != 3 || reqs[2].Body["state"] != "error" || !strings.Contains(fmt.Sprint(reqs[2].Body["description"]), "tether.toml:3: unknown key") {
		t.Errorf("requests:\n%s\nlast: %v", paths(reqs), reqs[len(reqs)-1].Body)
	}
	if !strings.Contains(res.summary, "### tether deploy failed") {
		t.Errorf("summary:\n%s", res.summary)
	}
}

func TestBadInputs(t *testing.T) {
	e := newActionEnv(t, nil, "push", "push_main.json")
	e.vars[InputEnv("command")] = "destroy"
	e.vars[InputEnv("parallel")] = "many"
	res := runAction(t, e, &fakeOps{}, nil, 0)
	if res.code != app.ExitUsage {
		t.Errorf("exit code %d", res.code)
	}
	for _, s := range []string{`input command: \"destroy\" is not one of`, `input parallel: \"many\"`} {
		if !strings.Contains(res.outputs["result"], s) {
			t.Errorf("result %s lacks %s", res.outputs["result"], s)
		}
	}
	if !strings.Contains(res.stderr, "tether: input command") {
		t.Errorf("stderr: %q", res.stderr)
	}
}

func TestUnknownEventNeedsACommand(t *testing.T) {
	e := newActionEnv(t, nil, "schedule", "push_main.json")
	res := runAction(t, e, &fakeOps{}, nil, 0)
	if res.code != app.ExitUsage || !strings.Contains(res.stdout, `does not know what to do on a \"schedule\" event`) && !strings.Contains(res.stdout, `does not know what to do on a "schedule" event`) {
		t.Errorf("exit %d\n%s", res.code, res.stdout)
	}
}

// Outside GitHub (the container image on another CI) the action runs the
// command it is given and reports to the log and the exit code only.
func TestOutsideGitHub(t *testing.T) {
	env := map[string]string{"INPUT_COMMAND": "deploy", "INPUT_NODES": "frame1,rpi", "INPUT_SSH_PRIVATE_KEY": "k3y-line-secret"}
	var stdout strings.Builder
	ops := &fakeOps{report: testReport("switch"), selected: []string{"frame1", "rpi"}}
	code := RunAction(t.Context(), ActionOptions{Getenv: func(k string) string { return env[k] }, Stdout: &stdout, Ops: ops})
	if code != app.ExitRolledBack {
		t.Errorf("exit code %d", code)
	}
	if len(ops.deploys) != 1 || len(ops.deploys[0].Keys) != 1 || string(ops.deploys[0].Keys[0]) != "k3y-line-secret\n" || !reflect.DeepEqual(ops.deploys[0].Nodes, []string{"frame1", "rpi"}) {
		t.Errorf("deploy requests: %+v", ops.deploys)
	}
	if !strings.Contains(stdout.String(), "no github-token") || !strings.Contains(stdout.String(), "NODE    STATUS") {
		t.Errorf("log:\n%s", stdout.String())
	}
}
