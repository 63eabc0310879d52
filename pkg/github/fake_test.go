package github

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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

	"github.com/tetherdeploy/tether/internal/app"
	"github.com/tetherdeploy/tether/pkg/deploy"
	"github.com/tetherdeploy/tether/pkg/plan"
	"github.com/tetherdeploy/tether/pkg/remote/remotetest"
)

const (
	testToken  = "ghs_testtoken0123456789abcdefABCDEF" // an installation token, as the run's own
	patToken   = "ghp_personal0123456789abcdefABCDEFGH"
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
	ID     int64
	Body   string
	User   string
	UserID int64
	Type   string // "Bot" or "User"
}

// fakeUser is the identity a token acts as.
type fakeUser struct {
	Login string
	ID    int64
	Type  string
}

// actionsBotUser is who the run's own token (testToken, "ghs_") writes as.
var actionsBotUser = fakeUser{Login: "github-actions[bot]", ID: 41898282, Type: "Bot"}

// fakeGitHub is an httptest server shaped like GitHub's REST API (or an
// /api/v1 server's) under a path prefix, so that a request that ignores
// the base URL reaches no endpoint and fails the test. It routes with
// ServeMux method and path patterns and keeps comments, deployments and
// statuses in memory. Handlers never stop the test: they report with
// t.Errorf, which is safe from any goroutine, and the server is closed
// (waiting for its handlers) before the test ends.
type fakeGitHub struct {
	t      testing.TB
	srv    *httptest.Server
	prefix string

	mu       sync.Mutex
	reqs     []apiRequest
	comments map[int][]*fakeComment
	nextID   int64
	pageSize int
	deps     []map[string]any
	statuses map[int64][]map[string]any
	// pulls maps a commit to the pull requests associated with it.
	pulls map[string][]map[string]any
	// token is the one every request must carry (testToken unless set).
	token string
	// user is who a personal token acts as; nil for an installation
	// token, which writes as the Actions bot and is refused GET /user
	// ("Resource not accessible by integration"), as on GitHub.
	user *fakeUser
	// fail, when set, answers a request with a status instead (0: normal).
	fail func(r *http.Request) (status int, header http.Header)
	// delay holds every answer back (or until the client gives up).
	delay time.Duration
	// noDeployments answers 404 on the Deployments API (/api/v1 servers have none).
	noDeployments bool
}

func newFakeGitHub(t testing.TB, prefix string) *fakeGitHub {
	f := &fakeGitHub{
		t:        t,
		prefix:   prefix,
		token:    testToken,
		comments: map[int][]*fakeComment{},
		nextID:   100,
		pageSize: 30,
		statuses: map[int64][]map[string]any{},
		pulls:    map[string][]map[string]any{},
	}
	repo := prefix + "/repos/" + testRepo
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+prefix+"/user", f.getUser)
	mux.HandleFunc("GET "+repo+"/issues/{n}/comments", f.listComments)
	mux.HandleFunc("POST "+repo+"/issues/{n}/comments", f.createComment)
	mux.HandleFunc("PATCH "+repo+"/issues/comments/{id}", f.editComment)
	mux.HandleFunc("POST "+repo+"/deployments", f.createDeployment)
	mux.HandleFunc("POST "+repo+"/deployments/{id}/statuses", f.createStatus)
	mux.HandleFunc("GET "+repo+"/commits/{sha}/pulls", f.commitPulls)
	mux.HandleFunc("GET "+repo+"/commits/{sha}/pull", f.commitPull)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("fake API: %s %s: no such endpoint under %s", r.Method, r.URL.Path, repo)
		reply(w, http.StatusNotFound, map[string]string{"message": "Not Found"})
	})
	f.srv = httptest.NewServer(f.record(mux))
	t.Cleanup(f.srv.Close)
	return f
}

// record notes every request with its JSON body, checks the token, and
// applies the injected delay and failures before routing.
func (f *fakeGitHub) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := apiRequest{Method: r.Method, Path: r.URL.Path}
		if r.URL.RawQuery != "" {
			req.Path += "?" + r.URL.RawQuery
		}
		if len(body) > 0 {
			if err := json.Unmarshal(body, &req.Body); err != nil {
				f.t.Errorf("fake API: %s: body is not a JSON object: %v", req, err)
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		f.mu.Lock()
		f.reqs = append(f.reqs, req)
		fail, delay, token := f.fail, f.delay, f.token
		f.mu.Unlock()

		if got := r.Header.Get("Authorization"); got != "Bearer "+token {
			f.t.Errorf("fake API: %s: Authorization %q", req, got)
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
				reply(w, status, map[string]string{"message": http.StatusText(status)})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// body decodes a request's JSON body into v; a bad body fails the test.
func (f *fakeGitHub) body(r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		f.t.Errorf("fake API: %s %s: %v", r.Method, r.URL.Path, err)
		return false
	}
	return true
}

// self is who the request's token writes as.
func (f *fakeGitHub) self() fakeUser {
	if f.user != nil {
		return *f.user
	}
	return actionsBotUser
}

func (f *fakeGitHub) getUser(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.user == nil {
		reply(w, http.StatusForbidden, map[string]string{"message": "Resource not accessible by integration"})
		return
	}
	reply(w, http.StatusOK, map[string]any{"login": f.user.Login, "id": f.user.ID, "type": f.user.Type})
}

func (f *fakeGitHub) listComments(w http.ResponseWriter, r *http.Request) {
	n, _ := strconv.Atoi(r.PathValue("n"))
	f.mu.Lock()
	defer f.mu.Unlock()
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
	out := []map[string]any{}
	for _, c := range all[from:to] {
		out = append(out, f.commentJSON(n, c))
	}
	reply(w, http.StatusOK, out)
}

func (f *fakeGitHub) createComment(w http.ResponseWriter, r *http.Request) {
	n, _ := strconv.Atoi(r.PathValue("n"))
	var in struct{ Body string }
	if !f.body(r, &in) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	u := f.self()
	c := &fakeComment{ID: f.nextID, Body: in.Body, User: u.Login, UserID: u.ID, Type: u.Type}
	f.comments[n] = append(f.comments[n], c)
	reply(w, http.StatusCreated, f.commentJSON(n, c))
}

// editComment edits any comment, as GitHub lets a token with write access
// to the repository do: only tether can keep itself to its own.
func (f *fakeGitHub) editComment(w http.ResponseWriter, r *http.Request) {
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	var in struct{ Body string }
	if !f.body(r, &in) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for n, cs := range f.comments {
		for _, c := range cs {
			if c.ID == id {
				c.Body = in.Body
				reply(w, http.StatusOK, f.commentJSON(n, c))
				return
			}
		}
	}
	reply(w, http.StatusNotFound, map[string]string{"message": "Not Found"})
}

func (f *fakeGitHub) createDeployment(w http.ResponseWriter, r *http.Request) {
	var in map[string]any
	if !f.body(r, &in) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.noDeployments {
		reply(w, http.StatusNotFound, map[string]string{"message": "Not Found"})
		return
	}
	f.deps = append(f.deps, in)
	reply(w, http.StatusCreated, map[string]any{"id": len(f.deps), "ref": in["ref"], "environment": in["environment"], "task": in["task"]})
}

func (f *fakeGitHub) createStatus(w http.ResponseWriter, r *http.Request) {
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	var in map[string]any
	if !f.body(r, &in) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if id < 1 || int(id) > len(f.deps) {
		f.t.Errorf("fake API: %s %s: no deployment %d", r.Method, r.URL.Path, id)
		reply(w, http.StatusNotFound, map[string]string{"message": "Not Found"})
		return
	}
	if d, ok := in["description"].(string); ok && len([]rune(d)) > maxDescription {
		f.t.Errorf("fake API: %s %s: description of %d characters", r.Method, r.URL.Path, len([]rune(d)))
	}
	f.statuses[id] = append(f.statuses[id], in)
	reply(w, http.StatusCreated, map[string]any{"id": 1000 + len(f.statuses[id]), "state": in["state"]})
}

func (f *fakeGitHub) commitPulls(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	prs := f.pulls[r.PathValue("sha")]
	if prs == nil {
		prs = []map[string]any{}
	}
	reply(w, http.StatusOK, prs)
}

// commitPull is the /api/v1 form: the one pull request, or 404.
func (f *fakeGitHub) commitPull(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if prs := f.pulls[r.PathValue("sha")]; len(prs) > 0 {
		reply(w, http.StatusOK, prs[0])
		return
	}
	reply(w, http.StatusNotFound, map[string]string{"message": "pull request does not exist"})
}

func (f *fakeGitHub) commentJSON(issue int, c *fakeComment) map[string]any {
	return map[string]any{
		"id":       c.ID,
		"body":     c.Body,
		"user":     map[string]any{"login": c.User, "id": c.UserID, "type": c.Type},
		"html_url": fmt.Sprintf("%s/%s/pull/%d#issuecomment-%d", testServer, testRepo, issue, c.ID),
	}
}

// apiURL is what GITHUB_API_URL is set to.
func (f *fakeGitHub) apiURL() string { return f.srv.URL + f.prefix }

// requests returns and forgets the requests received so far.
func (f *fakeGitHub) requests() []apiRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.reqs
	f.reqs = nil
	return r
}

// addComment seeds a comment.
func (f *fakeGitHub) addComment(issue int, user fakeUser, body string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	f.comments[issue] = append(f.comments[issue], &fakeComment{ID: f.nextID, Body: body, User: user.Login, UserID: user.ID, Type: user.Type})
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
	return answer(o, &o.plans, req, req.Progress, "Plan", o.plan, o.planErr)
}

func (o *fakeOps) Deploy(ctx context.Context, req app.DeployRequest) (*deploy.Report, error) {
	return answer(o, &o.deploys, req, req.Progress, "Deploy", o.report, o.err)
}

func (o *fakeOps) Rollback(ctx context.Context, req app.RollbackRequest) (*deploy.Report, error) {
	return answer(o, &o.rollbacks, req, req.Progress, "Rollback", o.report, o.err)
}

// answer records req among calls and reports progress as the operation op
// would, then answers with res and err; given neither, the fake has no
// answer for op and panics.
func answer[Req, Res any](o *fakeOps, calls *[]Req, req Req, p app.Progress, op string, res *Res, err error) (*Res, error) {
	o.mu.Lock()
	*calls = append(*calls, req)
	o.mu.Unlock()
	if res == nil && err == nil {
		panic("fakeOps: unexpected " + op)
	}
	o.progress(p)
	return res, err
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
	_, key := remotetest.NewKey(t)
	return string(key)
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
