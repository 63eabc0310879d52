package github

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"github.com/tetherdeploy/tether/internal/app"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tetherdeploy/tether/pkg/deploy"
	"github.com/tetherdeploy/tether/pkg/plan"
)

const (
	testToken  = "ghs_testtoken0123456789abcdefABCDEF"
	testRepo   = "example/fleet"
	testRunID  = 4242
	mainSHA    = "c3d4e5f60718293a4b5c6d7e8f90123456789012"
	head1SHA   = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
	mergeSHA   = "d4e5f60718293a4b5c6d7e8f9012345678901234" // GITHUB_SHA of a pull_request run
	testServer = "https://github.example"
)

// apiRequest is one request the fake API received.
type apiRequest struct {
	Method string
	Path   string // with the query, if any
	Body   map[string]any
}

func (r apiRequest) String() string { return r.Method + " " + r.Path }

type fakeComment struct {
	ID   int64
	Body string
	User string
	Type string // "Bot" or "User"
}

// fakeGitHub is an httptest server shaped like GitHub's REST API (or
// an /api/v1 server's) under a path prefix, so that a request that ignores the base
// URL shows up as a problem. It keeps comments, deployments and statuses
// in memory. Handlers never fail the test: they record problems, checked
// after the run.
type fakeGitHub struct {
	srv    *httptest.Server
	prefix string

	mu       sync.Mutex
	reqs     []apiRequest
	problems []string
	comments map[int][]*fakeComment
	nextID   int64
	pageSize int
	deps     []map[string]any
	statuses map[int64][]map[string]any
	// pulls maps a commit to the pull requests associated with it.
	pulls map[string][]map[string]any
	// fail, when set, answers a request with a status instead (0: normal).
	fail func(r *http.Request) (status int, header http.Header)
	// delay holds every answer back (or until the client gives up).
	delay time.Duration
	// noDeployments answers 404 on the Deployments API (/api/v1 servers have none).
	noDeployments bool
}

func newFakeGitHub(t *testing.T, prefix string) *fakeGitHub {
	f := &fakeGitHub{
		prefix:   prefix,
		comments: map[int][]*fakeComment{},
		nextID:   100,
		pageSize: 30,
		statuses: map[int64][]map[string]any{},
		pulls:    map[string][]map[string]any{},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// apiURL is what GITHUB_API_URL is set to.
func (f *fakeGitHub) apiURL() string { return f.srv.URL + f.prefix }

func (f *fakeGitHub) problem(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.problems = append(f.problems, fmt.Sprintf(format, args...))
}

// check fails the test for any problem a handler recorded.
func (f *fakeGitHub) check(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.problems {
		t.Errorf("fake API: %s", p)
	}
	f.problems = nil
}

// requests returns and forgets the requests received so far.
func (f *fakeGitHub) requests() []apiRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.reqs
	f.reqs = nil
	return r
}

func (f *fakeGitHub) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req := apiRequest{Method: r.Method, Path: r.URL.Path}
	if r.URL.RawQuery != "" {
		req.Path += "?" + r.URL.RawQuery
	}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &req.Body); err != nil {
			f.problem("%s: body is not a JSON object: %v", req, err)
		}
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	fail, delay := f.fail, f.delay
	f.mu.Unlock()

	if got := r.Header.Get("Authorization"); got != "Bearer "+testToken {
		f.problem("%s: Authorization %q", req, got)
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if fail != nil {
		if status, h := fail(r); status != 0 {
			for k, v := range h {
				w.Header()[k] = v
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"message":%q}`, http.StatusText(status))
			return
		}
	}
	path, ok := strings.CutPrefix(r.URL.Path, f.prefix+"/")
	if !ok {
		f.problem("%s: outside the API base %s", req, f.prefix)
		http.NotFound(w, r)
		return
	}
	parts := strings.Split(path, "/")
	if len(parts) < 3 || parts[0] != "repos" || parts[1]+"/"+parts[2] != testRepo {
		f.problem("%s: not a path of %s", req, testRepo)
		http.NotFound(w, r)
		return
	}
	f.route(w, r, req, parts[3:])
}

func (f *fakeGitHub) route(w http.ResponseWriter, r *http.Request, req apiRequest, p []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	reply := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	switch {
	case len(p) == 3 && p[0] == "issues" && p[2] == "comments":
		n, _ := strconv.Atoi(p[1])
		switch r.Method {
		case http.MethodGet:
			page, _ := strconv.Atoi(r.URL.Query().Get("page"))
			page = max(page, 1)
			all := f.comments[n]
			from := min((page-1)*f.pageSize, len(all))
			to := min(from+f.pageSize, len(all))
			if to < len(all) {
				next := *r.URL
				q := next.Query()
				q.Set("page", fmt.Sprint(page+1))
				next.RawQuery = q.Encode()
				w.Header().Set("Link", fmt.Sprintf(`<%s%s>; rel="next"`, f.srv.URL, next.RequestURI()))
			}
			var out []map[string]any
			for _, c := range all[from:to] {
				out = append(out, f.commentJSON(n, c))
			}
			if out == nil {
				out = []map[string]any{}
			}
			reply(http.StatusOK, out)
		case http.MethodPost:
			f.nextID++
			c := &fakeComment{ID: f.nextID, Body: fmt.Sprint(req.Body["body"]), User: "github-actions[bot]", Type: "Bot"}
			f.comments[n] = append(f.comments[n], c)
			reply(http.StatusCreated, f.commentJSON(n, c))
		default:
			f.problems = append(f.problems, fmt.Sprintf("%s: unexpected method", req))
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	case len(p) == 3 && p[0] == "issues" && p[1] == "comments" && r.Method == http.MethodPatch:
		id, _ := strconv.ParseInt(p[2], 10, 64)
		for n, cs := range f.comments {
			for _, c := range cs {
				if c.ID == id {
					if c.Type != "Bot" {
						reply(http.StatusForbidden, map[string]string{"message": "Resource not accessible by integration"})
						return
					}
					c.Body = fmt.Sprint(req.Body["body"])
					reply(http.StatusOK, f.commentJSON(n, c))
					return
				}
			}
		}
		reply(http.StatusNotFound, map[string]string{"message": "Not Found"})
	case len(p) == 1 && p[0] == "deployments" && r.Method == http.MethodPost:
		if f.noDeployments {
			reply(http.StatusNotFound, map[string]string{"message": "Not Found"})
			return
		}
		id := int64(len(f.deps) + 1)
		f.deps = append(f.deps, req.Body)
		reply(http.StatusCreated, map[string]any{"id": id, "ref": req.Body["ref"], "environment": req.Body["environment"], "task": req.Body["task"]})
	case len(p) == 3 && p[0] == "deployments" && p[2] == "statuses" && r.Method == http.MethodPost:
		id, _ := strconv.ParseInt(p[1], 10, 64)
		if id < 1 || int(id) > len(f.deps) {
			f.problems = append(f.problems, fmt.Sprintf("%s: no deployment %d", req, id))
			reply(http.StatusNotFound, map[string]string{"message": "Not Found"})
			return
		}
		if d, ok := req.Body["description"].(string); ok && len([]rune(d)) > maxDescription {
			f.problems = append(f.problems, fmt.Sprintf("%s: description of %d characters", req, len([]rune(d))))
		}
		f.statuses[id] = append(f.statuses[id], req.Body)
		reply(http.StatusCreated, map[string]any{"id": 1000 + len(f.statuses[id]), "state": req.Body["state"]})
	case len(p) == 3 && p[0] == "commits" && p[2] == "pulls" && r.Method == http.MethodGet:
		prs := f.pulls[p[1]]
		if prs == nil {
			prs = []map[string]any{}
		}
		reply(http.StatusOK, prs)
	case len(p) == 3 && p[0] == "commits" && p[2] == "pull" && r.Method == http.MethodGet:
		// The /api/v1 form: the one pull request, or 404.
		if prs := f.pulls[p[1]]; len(prs) > 0 {
			reply(http.StatusOK, prs[0])
			return
		}
		reply(http.StatusNotFound, map[string]string{"message": "pull request does not exist"})
	default:
		f.problems = append(f.problems, fmt.Sprintf("%s: no such endpoint", req))
		reply(http.StatusNotFound, map[string]string{"message": "Not Found"})
	}
}

func (f *fakeGitHub) commentJSON(issue int, c *fakeComment) map[string]any {
	return map[string]any{
		"id":       c.ID,
		"body":     c.Body,
		"user":     map[string]any{"login": c.User, "type": c.Type},
		"html_url": fmt.Sprintf("%s/%s/pull/%d#issuecomment-%d", testServer, testRepo, issue, c.ID),
	}
}

// addComment seeds a comment.
func (f *fakeGitHub) addComment(issue int, user, typ, body string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	f.comments[issue] = append(f.comments[issue], &fakeComment{ID: f.nextID, Body: body, User: user, Type: typ})
	return f.nextID
}

func (f *fakeGitHub) deleteComments(issue int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.comments, issue)
}

func (f *fakeGitHub) commentsOn(issue int) []fakeComment {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeComment
	for _, c := range f.comments[issue] {
		out = append(out, *c)
	}
	return out
}

// fakeOps answers with canned plans and reports and records the requests.
// A call it has no answer for panics, so an operation the test did not
// expect cannot pass unnoticed.
type fakeOps struct {
	plan    *plan.Plan
	planErr error
	report  *deploy.Report
	err     error
	// selected is passed to Progress.Selected before answering, when set.
	selected []string
	// say is written to the live progress; logs to each node's log.
	say  string
	logs map[string]string

	mu        sync.Mutex
	plans     []app.PlanRequest
	deploys   []app.DeployRequest
	rollbacks []app.RollbackRequest
}

// progress reports as the application layer does: say as a build log
// line, logs as each node's activation output.
func (o *fakeOps) progress(p app.Progress) {
	if o.say != "" {
		fmt.Fprint(p.BuildLog, o.say)
	}
	for n, text := range o.logs {
		for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
			p.Events(deploy.Event{Node: n, Phase: deploy.PhaseActivate, Output: l})
		}
	}
	if o.selected != nil {
		p.Selected(o.selected)
	}
}

func (o *fakeOps) Plan(ctx context.Context, req app.PlanRequest) (*plan.Plan, error) {
	o.mu.Lock()
	o.plans = append(o.plans, req)
	o.mu.Unlock()
	if o.plan == nil && o.planErr == nil {
		panic("fakeOps: unexpected Plan")
	}
	o.progress(req.Progress)
	return o.plan, o.planErr
}

func (o *fakeOps) Deploy(ctx context.Context, req app.DeployRequest) (*deploy.Report, error) {
	o.mu.Lock()
	o.deploys = append(o.deploys, req)
	o.mu.Unlock()
	if o.report == nil && o.err == nil {
		panic("fakeOps: unexpected Deploy")
	}
	o.progress(req.Progress)
	return o.report, o.err
}

func (o *fakeOps) Rollback(ctx context.Context, req app.RollbackRequest) (*deploy.Report, error) {
	o.mu.Lock()
	o.rollbacks = append(o.rollbacks, req)
	o.mu.Unlock()
	if o.report == nil && o.err == nil {
		panic("fakeOps: unexpected Rollback")
	}
	o.progress(req.Progress)
	return o.report, o.err
}

// storePath is a valid-looking store path for name.
func storePath(name string) string {
	const alphabet = "0123456789abcdfghijklmnpqrsvwxyz"
	h := make([]byte, 32)
	for i := range h {
		h[i] = alphabet[(len(name)*7+i*13+int(name[i%len(name)]))%len(alphabet)]
	}
	return "/nix/store/" + string(h) + "-" + name
}

func testPlan() *plan.Plan {
	cur := []plan.Path{{Path: storePath("nixos-system-frame1-24.05.1"), NarSize: 1000}, {Path: storePath("openssl-3.0.13"), NarSize: 6_000_000}}
	next := []plan.Path{{Path: storePath("nixos-system-frame1-24.05.2"), NarSize: 1000}, {Path: storePath("openssl-3.0.14"), NarSize: 6_100_000}}
	frame1 := plan.ForNode(plan.NodeInput{Node: "frame1", CurrentSystem: cur[0].Path, CurrentClosure: cur, NewSystem: next[0].Path, NewClosure: next})
	rpi := plan.Unreachable("rpi", storePath("nixos-system-rpi-24.05.2"), fmt.Errorf("dial rpi via frame1: i/o timeout"))
	return plan.New("github:example/fleet", mergeSHA, time.Date(2024, 3, 1, 12, 30, 0, 0, time.UTC), []plan.NodePlan{frame1, rpi})
}

// testReport: frame1 deployed, rpi failed and rolled back.
func testReport(action string) *deploy.Report {
	start := time.Date(2024, 3, 1, 12, 30, 0, 0, time.UTC)
	frame1 := deploy.Result{
		Node: "frame1", Status: deploy.StatusDeployed, Action: deploy.Action(action),
		Previous: storePath("nixos-system-frame1-24.05.1"), New: storePath("nixos-system-frame1-24.05.2"), Current: storePath("nixos-system-frame1-24.05.2"),
		Generation: 42, Copied: deploy.CopyStats{Paths: 3, Bytes: 6_100_000},
		Timings: deploy.Timings{Total: deploy.Seconds(20 * time.Second)},
	}
	rpi := deploy.Result{
		Node: "rpi", Status: deploy.StatusRolledBack, Action: deploy.Action(action),
		Previous: storePath("nixos-system-rpi-24.05.1"), New: storePath("nixos-system-rpi-24.05.2"), Current: storePath("nixos-system-rpi-24.05.1"),
		Error: "no confirmation within 30s: the node stopped answering", Reason: "no confirmation within 30s",
	}
	if action == "rollback" {
		frame1.Previous, frame1.New = frame1.New, frame1.Previous
		frame1.Current = frame1.New
		frame1.Generation = 41
		rpi.Error, rpi.Reason = "activation of generation 41 failed: exit status 2", ""
	}
	return &deploy.Report{DeployID: "run-1", Flake: ".", Action: deploy.Action(action), Started: start, Finished: start.Add(time.Minute),
		Results: []deploy.Result{frame1, rpi}}
}

// testKey is an OpenSSH private key, generated per test run.
func testKey(t *testing.T) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "ci")
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block))
}

// actionEnv is the environment of one run of the action.
type actionEnv struct {
	vars    map[string]string
	output  string
	summary string
}

func newActionEnv(t *testing.T, f *fakeGitHub, eventName, payload string) *actionEnv {
	t.Helper()
	dir := t.TempDir()
	e := &actionEnv{output: filepath.Join(dir, "output"), summary: filepath.Join(dir, "summary")}
	sha := mainSHA
	if strings.HasPrefix(eventName, "pull_request") {
		sha = mergeSHA
	}
	e.vars = map[string]string{
		"GITHUB_ACTIONS":         "true",
		"GITHUB_EVENT_NAME":      eventName,
		"GITHUB_EVENT_PATH":      filepath.Join("testdata", payload),
		"GITHUB_REPOSITORY":      testRepo,
		"GITHUB_SERVER_URL":      testServer,
		"GITHUB_RUN_ID":          fmt.Sprint(testRunID),
		"GITHUB_RUN_ATTEMPT":     "1",
		"GITHUB_SHA":             sha,
		"GITHUB_REF":             "refs/heads/main",
		"GITHUB_WORKFLOW":        "Deploy",
		"GITHUB_JOB":             "tether",
		"GITHUB_ACTOR":           "alice",
		"GITHUB_OUTPUT":          e.output,
		"GITHUB_STEP_SUMMARY":    e.summary,
		InputEnv("command"):      "auto",
		InputEnv("flake"):        ".",
		InputEnv("github-token"): testToken,
		InputEnv("comment"):      "on",
		InputEnv("environment"):  "production",
	}
	if f != nil {
		e.vars["GITHUB_API_URL"] = f.apiURL()
	}
	return e
}

func (e *actionEnv) getenv(k string) string { return e.vars[k] }

// result of one run.
type runResult struct {
	code           int
	stdout, stderr string
	outputs        map[string]string
	summary        string
}

func runAction(t *testing.T, e *actionEnv, ops Operations, f *fakeGitHub, timeout time.Duration) runResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	opts := ActionOptions{
		Getenv: e.getenv, Stdout: &stdout, Stderr: &stderr, Ops: ops,
		Now:        func() time.Time { return time.Date(2024, 3, 1, 12, 31, 0, 0, time.UTC) },
		APITimeout: timeout,
	}
	if f != nil {
		opts.HTTPClient = f.srv.Client()
	}
	code := RunAction(context.Background(), opts)
	res := runResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
	res.outputs = readOutputs(t, e.output)
	if b, err := os.ReadFile(e.summary); err == nil {
		res.summary = string(b)
	}
	// Start every run on fresh files, as each step does.
	os.Remove(e.output)
	os.Remove(e.summary)
	return res
}

// readOutputs parses a GITHUB_OUTPUT file as the runner does: name=value
// lines and name<<DELIMITER blocks. A name set twice is a test failure.
func readOutputs(t *testing.T, path string) map[string]string {
	t.Helper()
	out := map[string]string{}
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		var name, value string
		if n, delim, ok := strings.Cut(line, "<<"); ok {
			name = n
			var lines []string
			closed := false
			for sc.Scan() {
				if sc.Text() == delim {
					closed = true
					break
				}
				lines = append(lines, sc.Text())
			}
			if !closed {
				t.Errorf("outputs: %s: delimiter %q never closes", name, delim)
			}
			value = strings.Join(lines, "\n")
		} else if n, v, ok := strings.Cut(line, "="); ok {
			name, value = n, v
		} else {
			t.Errorf("outputs: bad line %q", line)
			continue
		}
		if _, dup := out[name]; dup {
			t.Errorf("outputs: %s set twice", name)
		}
		out[name] = value
	}
	return out
}

// resultOf decodes the result output.
func resultOf(t *testing.T, res runResult) Result {
	t.Helper()
	var r Result
	if err := json.Unmarshal([]byte(res.outputs["result"]), &r); err != nil {
		t.Fatalf("result output %q: %v", res.outputs["result"], err)
	}
	return r
}

// paths lists the requests as "METHOD path" lines.
func paths(reqs []apiRequest) string {
	var s []string
	for _, r := range reqs {
		s = append(s, r.String())
	}
	return strings.Join(s, "\n")
}
