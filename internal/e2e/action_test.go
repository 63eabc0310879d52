package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/internal/fixture"
)

const (
	ghRepo  = "example/fleet"
	mainSHA = "c3d4e5f60718293a4b5c6d7e8f90123456789012"
	prSHA   = "d4e5f60718293a4b5c6d7e8f9012345678901234"
)

// fakeGitHub records what tether asks of the GitHub API and answers the
// way GitHub does for the calls tether makes: issue comments, deployments
// and their statuses, and the pull requests of a commit.
type fakeGitHub struct {
	srv      *httptest.Server
	mu       sync.Mutex
	requests []string // "METHOD /path"
	comments map[int64]ghComment
	statuses map[int64][]string // deployment id → states
	deploys  map[int64]string   // deployment id → environment
	nextID   int64
}

type ghComment struct {
	Issue int
	Body  string
}

func newFakeGitHub(t *testing.T) *fakeGitHub {
	f := &fakeGitHub{comments: map[int64]ghComment{}, statuses: map[int64][]string{}, deploys: map[int64]string{}, nextID: 100}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeGitHub) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	path := strings.TrimPrefix(r.URL.Path, "/api/v3")
	f.requests = append(f.requests, r.Method+" "+path)
	parts := strings.Split(strings.Trim(path, "/"), "/")
	reply := func(code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(v)
	}
	var in map[string]any
	json.Unmarshal(body, &in)
	if len(parts) < 4 || parts[0] != "repos" || parts[1]+"/"+parts[2] != ghRepo {
		reply(404, map[string]string{"message": "Not Found"})
		return
	}
	rest := parts[3:]
	switch {
	case len(rest) == 3 && rest[0] == "issues" && rest[2] == "comments" && r.Method == "GET":
		var issue int
		fmt.Sscan(rest[1], &issue)
		var list []map[string]any
		for id, c := range f.comments {
			if c.Issue == issue {
				list = append(list, map[string]any{"id": id, "body": c.Body, "user": map[string]any{"login": "github-actions[bot]", "type": "Bot"}})
			}
		}
		reply(200, list)
	case len(rest) == 3 && rest[0] == "issues" && rest[2] == "comments" && r.Method == "POST":
		var issue int
		fmt.Sscan(rest[1], &issue)
		f.nextID++
		f.comments[f.nextID] = ghComment{Issue: issue, Body: fmt.Sprint(in["body"])}
		reply(201, map[string]any{"id": f.nextID, "body": in["body"]})
	case len(rest) == 3 && rest[0] == "issues" && rest[1] == "comments" && r.Method == "PATCH":
		var id int64
		fmt.Sscan(rest[2], &id)
		c, ok := f.comments[id]
		if !ok {
			reply(404, map[string]string{"message": "Not Found"})
			return
		}
		c.Body = fmt.Sprint(in["body"])
		f.comments[id] = c
		reply(200, map[string]any{"id": id, "body": c.Body})
	case len(rest) == 1 && rest[0] == "deployments" && r.Method == "POST":
		f.nextID++
		f.deploys[f.nextID] = fmt.Sprint(in["environment"])
		reply(201, map[string]any{"id": f.nextID, "environment": in["environment"]})
	case len(rest) == 3 && rest[0] == "deployments" && rest[2] == "statuses" && r.Method == "POST":
		var id int64
		fmt.Sscan(rest[1], &id)
		f.statuses[id] = append(f.statuses[id], fmt.Sprint(in["state"]))
		reply(201, map[string]any{"id": 1, "state": in["state"]})
	case len(rest) == 3 && rest[0] == "commits" && rest[2] == "pulls":
		reply(200, []map[string]any{{"number": 7, "state": "closed", "merged_at": "2026-11-25T10:00:00Z", "merge_commit_sha": rest[1]}})
	default:
		reply(404, map[string]string{"message": "Not Found"})
	}
}

// finalStates maps each environment to the last status of its newest
// deployment.
func (f *fakeGitHub) finalStates() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]string{}
	newest := map[string]int64{}
	for id, env := range f.deploys {
		if s := f.statuses[id]; len(s) > 0 && id > newest[env] {
			newest[env] = id
			out[env] = s[len(s)-1]
		}
	}
	return out
}

func (f *fakeGitHub) commentsOn(issue int) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.comments {
		if c.Issue == issue {
			out = append(out, c.Body)
		}
	}
	return out
}

// actionRun is one `tether action` step.
type actionRun struct {
	code    int
	log     string
	outputs map[string]string
	summary string
}

// action runs `tether action` as the composite action's step would, with
// the inputs in INPUT_* and the event from a recorded payload.
func (s *sandbox) action(ctx context.Context, gh *fakeGitHub, event, payload string, inputs map[string]string) actionRun {
	s.t.Helper()
	dir := s.t.TempDir()
	key, err := os.ReadFile(s.fleet.ClientKeyPath)
	if err != nil {
		s.t.Fatal(err)
	}
	sha := mainSHA
	if event == "pull_request" {
		sha = prSHA
	}
	env := append([]string(nil), s.env...)
	env = append(env,
		"GITHUB_ACTIONS=true", "GITHUB_EVENT_NAME="+event, "GITHUB_EVENT_PATH="+payload,
		"GITHUB_REPOSITORY="+ghRepo, "GITHUB_SERVER_URL=https://github.example", "GITHUB_API_URL="+gh.srv.URL+"/api/v3",
		"GITHUB_RUN_ID=4242", "GITHUB_RUN_ATTEMPT=1", "GITHUB_SHA="+sha, "GITHUB_REF=refs/heads/main",
		"GITHUB_WORKFLOW=Deploy", "GITHUB_JOB=tether", "GITHUB_ACTOR=alice",
		"GITHUB_OUTPUT="+filepath.Join(dir, "output"), "GITHUB_STEP_SUMMARY="+filepath.Join(dir, "summary"),
		"TETHER_AGENTS_DIR="+bins.AgentsDir,
		"INPUT_COMMAND=auto", "INPUT_FLAKE="+s.flake, "INPUT_GITHUB-TOKEN=ghs_faketoken",
		"INPUT_SSH-PRIVATE-KEY="+string(key), "INPUT_KNOWN-HOSTS="+string(s.fleet.KnownHosts()),
		"INPUT_COMMENT=on", "INPUT_ENVIRONMENT=production",
	)
	for k, v := range inputs {
		env = append(env, "INPUT_"+strings.ToUpper(k)+"="+v)
	}
	cmd := exec.CommandContext(ctx, bins.Tether, "action")
	cmd.Env = env
	out, _ := cmd.CombinedOutput()
	r := actionRun{code: cmd.ProcessState.ExitCode(), log: string(out), outputs: readGitHubOutput(s.t, filepath.Join(dir, "output"))}
	if b, err := os.ReadFile(filepath.Join(dir, "summary")); err == nil {
		r.summary = string(b)
	}
	s.t.Logf("tether action (%s) → exit %d\n%s", event, r.code, r.log)
	// The key's lines may appear only in the masks that hide them.
	for _, line := range strings.Split(string(key), "\n") {
		if len(line) < 20 {
			continue
		}
		for _, l := range strings.Split(r.log, "\n") {
			if strings.Contains(l, line) && !strings.HasPrefix(strings.TrimSpace(l), "::add-mask::") {
				s.t.Errorf("a line of the private key appears in the action's log: %q", l)
			}
		}
		if strings.Contains(r.summary, line) || strings.Contains(fmt.Sprint(r.outputs), line) {
			s.t.Errorf("a line of the private key appears in the summary or outputs")
		}
	}
	return r
}

// readGitHubOutput parses name=value lines and name<<DELIM blocks.
func readGitHubOutput(t *testing.T, path string) map[string]string {
	out := map[string]string{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if name, delim, ok := strings.Cut(line, "<<"); ok {
			var b []string
			for sc.Scan() && sc.Text() != delim {
				b = append(b, sc.Text())
			}
			out[name] = strings.Join(b, "\n")
		} else if name, v, ok := strings.Cut(line, "="); ok {
			out[name] = v
		}
	}
	return out
}

func TestActionOnSandboxHosts(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{timeout: 15 * time.Minute})
	gh := newFakeGitHub(t)
	events := "../../pkg/github/testdata/"

	// Merge → deploy v1 to the whole fleet.
	r := s.action(ctx, gh, "push", events+"push_main.json", nil)
	if r.code != exitOK {
		t.Fatalf("deploy on push: exit %d", r.code)
	}
	for _, h := range fixture.Hosts() {
		s.wantRunning(ctx, h, fixture.V1)
		if st := gh.finalStates()["production/"+h]; st != "success" {
			t.Errorf("deployment of %s ended %q, want success", h, st)
		}
	}
	if got := strings.Fields(r.outputs["deployed"]); len(got) != 3 {
		t.Errorf("output deployed = %q, want the three nodes", r.outputs["deployed"])
	}
	if c := gh.commentsOn(7); len(c) != 1 || !strings.Contains(c[0], "frame1") {
		t.Errorf("merged pull request #7 comments: %q, want one naming the nodes", c)
	}

	// A pull request changes everything to v2: one plan comment, updated
	// in place on the next push.
	for _, h := range fixture.Hosts() {
		s.setVariant(h, fixture.V2)
	}
	for i := 0; i < 2; i++ {
		r = s.action(ctx, gh, "pull_request", events+"pull_request_opened.json", nil)
		if r.code != exitOK {
			t.Fatalf("plan on pull request: exit %d", r.code)
		}
	}
	var plans []string
	for _, c := range gh.commentsOn(7) {
		if strings.Contains(c, "openssl") {
			plans = append(plans, c)
		}
	}
	if len(plans) != 1 || !strings.Contains(plans[0], "3.0.14") {
		t.Errorf("plan comments on #7: %d (want exactly one, showing openssl 3.0.14)", len(plans))
	}
	for _, h := range fixture.Hosts() {
		s.wantRunning(ctx, h, fixture.V1) // planning deployed nothing
	}

	// A bad release for web: it rolls back, the deployment fails, the
	// outputs say so; with keep-going the others take the release.
	s.setVariant(fixture.Web, fixture.Fail)
	r = s.action(ctx, gh, "push", events+"push_main.json", map[string]string{"confirm-timeout": "6s", "keep-going": "true"})
	if r.code != exitRolledBack {
		t.Errorf("deploy of a failing web: exit %d, want %d", r.code, exitRolledBack)
	}
	if r.outputs["rolled-back"] != fixture.Web {
		t.Errorf("output rolled-back = %q, want web", r.outputs["rolled-back"])
	}
	s.wantRunning(ctx, fixture.Web, fixture.V1)
	s.wantRunning(ctx, fixture.RPi, fixture.V2)
	if st := gh.finalStates(); st["production/web"] != "failure" {
		t.Errorf("web's deployment ended %q, want failure", st["production/web"])
	}

	// Manual rollback of rpi through workflow_dispatch.
	r = s.action(ctx, gh, "workflow_dispatch", "testdata/workflow_dispatch_rollback_rpi.json", nil)
	if r.code != exitOK {
		t.Fatalf("rollback on dispatch: exit %d", r.code)
	}
	s.wantRunning(ctx, fixture.RPi, fixture.V1)
	if !strings.Contains(r.summary, "rpi") || !strings.Contains(r.outputs["result"], `"rollback"`) {
		t.Errorf("rollback summary/result do not report it:\nsummary: %s\nresult: %s", r.summary, r.outputs["result"])
	}
}
