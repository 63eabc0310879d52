package github

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/sethvargo/go-githubactions"

	"github.com/tetherdeploy/tether/internal/app"
	"github.com/tetherdeploy/tether/pkg/agent"
	"github.com/tetherdeploy/tether/pkg/deploy"
	"github.com/tetherdeploy/tether/pkg/plan"
	"github.com/tetherdeploy/tether/pkg/report"
)

// ActionOptions is what RunAction needs from the process.
type ActionOptions struct {
	// Getenv reads the environment; the command passes os.Getenv (or a
	// lookup in its Env), tests a map. Required.
	Getenv func(string) string
	// Stdout receives the job log, workflow commands included; Stderr the
	// plain error lines. Both are redacted. nil discards.
	Stdout, Stderr io.Writer
	// HTTPClient makes the API calls; nil means a client with a timeout.
	HTTPClient *http.Client
	// Ops runs the plans, deploys and rollbacks. Required.
	Ops Operations
	// Now is the clock shown in comments; nil means time.Now.
	Now func() time.Time
	// APITimeout bounds each API call; 0 means DefaultAPITimeout.
	APITimeout time.Duration
}

// Result is the "result" output: what the run did, as JSON.
type Result struct {
	// Command is plan, deploy, rollback, or none.
	Command string `json:"command"`
	Event   string `json:"event,omitempty"`
	// Reason says why nothing ran, or why this command.
	Reason string `json:"reason,omitempty"`
	// Error is set when the run failed as a whole.
	Error    string         `json:"error,omitempty"`
	Plan     *plan.Plan     `json:"plan,omitempty"`
	Report   *deploy.Report `json:"report,omitempty"`
	ExitCode int            `json:"exitCode"`
}

// RunAction is `tether action`: it reads the inputs and the event, runs a
// plan, deploy or rollback through opts.Ops, and reports on it (log groups,
// annotations, job summary, outputs, the pull request comment and the
// deployments). It returns the process exit code, which reflects the
// operation alone: reporting failures are warnings.
func RunAction(ctx context.Context, opts ActionOptions) int {
	if opts.Stdout == nil {
		opts.Stdout = io.Discard
	}
	if opts.Stderr == nil {
		opts.Stderr = io.Discard
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.APITimeout <= 0 {
		opts.APITimeout = DefaultAPITimeout
	}
	getenv := opts.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}

	// Mask the secrets before anything else is printed: the runner hides
	// them in the log from here on, and our own writers replace them too.
	values := []string{readInput(getenv, "ssh-private-key"), readInput(getenv, "github-token")}
	sec := newSecrets(values...)
	masker := githubactions.New(githubactions.WithWriter(opts.Stdout), githubactions.WithGetenv(getenv))
	for _, s := range secretLines(values...) {
		masker.AddMask(s)
	}
	out := &redactWriter{w: opts.Stdout, s: sec}
	errw := &redactWriter{w: opts.Stderr, s: sec}
	defer out.flush()
	defer errw.flush()
	r := &run{
		opts:   opts,
		getenv: getenv,
		sec:    sec,
		log:    &jobLog{w: out},
		errlog: &jobLog{w: errw},
	}
	defer r.log.close()
	defer r.errlog.close()
	r.act = githubactions.New(githubactions.WithWriter(r.log), githubactions.WithGetenv(getenv))
	if opts.Ops == nil {
		return r.usage(errors.New("no operations to run (internal error)"))
	}
	return r.main(ctx)
}

// run is one invocation of the action.
type run struct {
	opts   ActionOptions
	getenv func(string) string
	sec    secrets
	// log is the job log (stdout), errlog stderr; act writes tether's
	// own workflow commands to log.
	log    *jobLog
	errlog *jobLog
	act    *githubactions.Action

	in       Inputs
	ghc      *githubactions.GitHubContext
	ev       *event
	d        decision
	api      *api
	runURL   string
	progress *Progress
}

func (r *run) main(ctx context.Context) int {
	in, err := parseInputs(r.getenv)
	r.in = in
	if err != nil {
		return r.usage(err)
	}
	r.ghc = r.context()
	r.ev, err = readEvent(r.ghc.EventName, r.ghc.EventPath)
	if err != nil {
		if in.Command == CommandAuto {
			return r.usage(err)
		}
		r.warn("Event", err.Error())
		r.ev = &event{Name: r.ghc.EventName}
	}
	r.d, err = decide(in, r.ev)
	if err != nil {
		return r.usage(err)
	}
	r.runURL = runURL(r.ghc)
	r.api = r.newAPI()

	switch r.d.Command {
	case "":
		return r.nothing()
	case CommandPlan:
		return r.plan(ctx)
	default:
		return r.deploy(ctx)
	}
}

// context reads the Actions context. Only the event file can make it fail
// as a whole; the event is read again (typed) by readEvent, which says
// what is wrong, so here the context is read without it.
func (r *run) context() *githubactions.GitHubContext {
	c, err := r.act.Context()
	if c == nil {
		noEvent := func(k string) string {
			if k == "GITHUB_EVENT_PATH" {
				return ""
			}
			return r.getenv(k)
		}
		c, err = githubactions.New(githubactions.WithGetenv(noEvent), githubactions.WithWriter(io.Discard)).Context()
		c.EventPath = r.getenv("GITHUB_EVENT_PATH")
	}
	if err != nil {
		r.warn("Actions context", err.Error())
	}
	return c
}

func (r *run) newAPI() *api {
	if r.d.Command == "" {
		return offAPI("nothing to report")
	}
	if r.in.GitHubToken == "" {
		r.warn("GitHub API", "no github-token: pull request comments and deployments are skipped")
		return offAPI("no token")
	}
	v1 := apiV1(r.ghc.APIURL, r.getenv)
	a, err := newAPI(r.ghc.APIURL, r.ghc.Repository, r.in.GitHubToken, r.sec, r.opts.HTTPClient, r.opts.APITimeout, v1, r.warn, r.notice)
	if err != nil {
		r.warn("GitHub API", err.Error()+": pull request comments and deployments are skipped")
		return offAPI(err.Error())
	}
	return a
}

// usage reports a problem with the inputs or the event: nothing ran. It
// is the only writer of stderr, and runs before anything else opens a
// stop-commands block (see jobLog).
func (r *run) usage(err error) int {
	r.annotate("error", "tether: nothing ran", err.Error())
	r.errlog.untrusted("tether: " + err.Error())
	r.errlog.close()
	r.writeOutputs(Result{Command: "none", Event: r.eventName(), Error: err.Error(), ExitCode: app.ExitUsage}, nil, nil, nil)
	return app.ExitUsage
}

func (r *run) nothing() int {
	r.notice("tether", r.d.Reason)
	r.summary(fmt.Sprintf("### tether\n\nNothing to do: %s.\n", report.MarkdownText(r.d.Reason)))
	r.writeOutputs(Result{Command: "none", Event: r.eventName(), Reason: r.d.Reason}, nil, nil, nil)
	return app.ExitOK
}

func (r *run) eventName() string {
	if r.ghc == nil {
		return r.getenv("GITHUB_EVENT_NAME")
	}
	return r.ghc.EventName
}

// target is the part of every request taken from the inputs.
func (r *run) target() app.Target {
	t := app.Target{
		Dir:            r.in.WorkingDirectory,
		Flake:          r.in.Flake,
		Nodes:          r.d.Nodes,
		ConfirmTimeout: r.in.ConfirmTimeout,
		BuildHost:      r.in.BuildHost,
		Parallel:       r.in.Parallel,
		Who:            r.who(),
		Progress:       r.progress.appProgress(),
	}
	if r.in.SSHPrivateKey != "" {
		t.Keys = [][]byte{[]byte(r.in.SSHPrivateKey)}
	}
	if r.in.KnownHosts != "" {
		t.KnownHosts = [][]byte{[]byte(r.in.KnownHosts)}
	}
	return t
}

var unsafeWho = regexp.MustCompile(`[^A-Za-z0-9@:/._ -]+`)

// who names the run on the nodes' locks, so a second deploy is told whose
// run holds a node.
func (r *run) who() string {
	w := "github:" + r.ghc.Repository
	if r.ghc.RunID != 0 {
		w += fmt.Sprintf(" run %d", r.ghc.RunID)
	}
	if r.ghc.Actor != "" {
		w += " by " + r.ghc.Actor
	}
	return truncate(unsafeWho.ReplaceAllString(w, "_"), 200)
}

// runURL links the run's page, where the log and the job summary are.
func runURL(c *githubactions.GitHubContext) string {
	if c.ServerURL == "" || c.Repository == "" || c.RunID == 0 {
		return ""
	}
	u, err := url.Parse(strings.TrimRight(c.ServerURL, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return ""
	}
	return fmt.Sprintf("%s/%s/actions/runs/%d", u.String(), c.Repository, c.RunID)
}

// plan makes the plan, prints it, and puts it in the job summary and the
// pull request's comment.
func (r *run) plan(ctx context.Context) int {
	r.progress = newProgress(r.log, nil)
	dry := r.in.DryActivate
	if r.d.Fork && dry {
		r.warn("dry-activate refused", "this pull request comes from a fork: nothing runs on the nodes for it, dry-activate included")
		dry = false
	}
	r.log.untrusted("tether: " + r.d.Reason)
	req := app.PlanRequest{Target: r.target(), Commit: r.ghc.SHA, DryActivate: dry}
	if r.d.Fork {
		req.NoTargets = true
		req.NoTargetsReason = "pull request from a fork: no command runs on the machines, so only the new system is shown"
	}
	p, err := r.opts.Ops.Plan(ctx, req)
	r.progress.finish()
	r.nodeGroups(nil)
	if err == nil && p == nil {
		err = errors.New("the planner returned no plan")
	}
	note := ""
	if r.d.Fork {
		note = "> [!NOTE]\n> This pull request comes from a fork, so tether ran nothing on the nodes for it: no dry-activate and no queries over SSH. The plan shows what is known without contacting them.\n\n"
	}
	code := app.PlanExit(p, err)
	if err != nil {
		r.annotate("error", "tether plan failed", err.Error())
		r.summary(report.FailureMarkdown("tether plan", note+"The plan failed:\n\n", err.Error(), summaryRoom(r.getenv("GITHUB_STEP_SUMMARY"))))
		r.planComment(ctx, func(limit int) string {
			return report.FailureMarkdown("tether plan", note+"The plan failed:\n\n", err.Error(), limit)
		})
		r.writeOutputs(Result{Command: CommandPlan, Event: r.eventName(), Reason: r.d.Reason, Error: err.Error(), ExitCode: code}, nil, nil, nil)
		return code
	}

	var txt strings.Builder
	if err := report.PlanText(&txt, p); err == nil {
		r.log.untrustedText(txt.String())
	}
	for i := range p.Nodes {
		n := &p.Nodes[i]
		switch {
		case n.Status == plan.StatusError:
			r.annotate("error", "tether plan: "+n.Node+" failed", n.Error)
		case n.Status == plan.StatusUnreachable:
			r.annotate("error", "tether plan: "+n.Node+" unreachable", n.Error)
		case !n.Planned():
			r.annotate("error", "tether plan: "+n.Node+" dry activation failed", n.DryActivate.Error)
		}
	}
	if room := summaryRoom(r.getenv("GITHUB_STEP_SUMMARY")); room > len(note) {
		r.summary(note + report.PlanMarkdown(p, report.PlanMarkdownOptions{Limit: room - len(note)}))
	}
	r.planComment(ctx, func(limit int) string {
		return note + report.PlanMarkdown(p, report.PlanMarkdownOptions{Limit: limit - len(note), FullPlanURL: r.runURL})
	})
	r.writeOutputs(Result{Command: CommandPlan, Event: r.eventName(), Reason: r.d.Reason, Plan: p, ExitCode: code}, nil, nil, nil)
	return code
}

// planComment writes the pull request's sticky plan comment; render
// makes its body within a limit.
func (r *run) planComment(ctx context.Context, render func(limit int) string) {
	if r.d.PR <= 0 || !r.in.Comment || !r.api.enabled() {
		return
	}
	r.comment(ctx, "plan", []int{r.d.PR}, r.d.HeadSHA, render)
}

// comment writes one sticky comment of kind on each pull request: the
// body render makes within what the marker and footer leave of GitHub's
// limit.
func (r *run) comment(ctx context.Context, kind string, prs []int, sha string, render func(limit int) string) {
	mark := marker(kind, r.commentKey())
	footer := r.footer(sha)
	body := render(report.DefaultCommentLimit-len(mark)-1-len(footer)) + footer
	for _, n := range prs {
		if u := r.api.upsertComment(ctx, n, mark, body); u != "" {
			r.act.Infof("tether: %s comment %s", kind, u)
		}
	}
}

// commentKey tells this workflow's and job's comments from others'.
func (r *run) commentKey() string {
	return r.ghc.Workflow + "/" + r.ghc.Job
}

var hexSHA = regexp.MustCompile(`^[0-9a-f]{7,64}$`)

// footer says when and by which run a comment was written.
func (r *run) footer(sha string) string {
	var parts []string
	parts = append(parts, "Updated "+r.opts.Now().UTC().Format("2006-01-02 15:04 UTC"))
	if hexSHA.MatchString(sha) {
		parts = append(parts, "for "+sha[:7])
	}
	if r.runURL != "" {
		parts = append(parts, fmt.Sprintf("by [run %d](%s)", r.ghc.RunID, r.runURL))
	}
	return "\n---\n<sub>" + strings.Join(parts, " ") + ".</sub>\n"
}

// deploy runs a deploy or a rollback and reports it.
func (r *run) deploy(ctx context.Context) int {
	rollback := r.d.Command == CommandRollback
	dry := !rollback && r.in.DryActivate
	sha := r.ghc.SHA
	var deps *deployments
	switch {
	case dry:
		// A dry activation changes nothing: recording it as a deployment
		// would mark it the active one.
	case !r.api.enabled():
	case sha == "":
		r.notice("Deployments", "GITHUB_SHA is not set: deployments are not recorded")
	default:
		task := "deploy"
		if rollback {
			task = "deploy:rollback"
		}
		deps = newDeployments(r.api, r.in.Environment, sha, task, r.runURL)
	}
	r.progress = newProgress(r.log, func(nodes []string) {
		if deps != nil {
			deps.start(ctx, nodes)
		}
	})
	r.log.untrusted("tether: " + r.d.Reason)

	var rep *deploy.Report
	var err error
	if rollback {
		rep, err = r.opts.Ops.Rollback(ctx, app.RollbackRequest{Target: r.target(), Generation: r.d.Generation})
	} else {
		req := app.DeployRequest{Target: r.target(), KeepGoing: r.in.KeepGoing}
		if dry {
			req.Action = agent.ActionDryActivate
		} else {
			req.Reboot = r.in.Reboot
		}
		rep, err = r.opts.Ops.Deploy(ctx, req)
	}
	r.progress.finish()
	if rep == nil && err == nil {
		err = errors.New("the deployer returned no report")
	}
	r.nodeGroups(rep)
	code := app.DeployExit(rep, err)

	if rep != nil {
		var txt strings.Builder
		if report.DeployText(&txt, rep) == nil {
			r.log.untrustedText(txt.String())
		}
		r.annotateResults(rep)
	}
	if err != nil {
		r.annotate("error", "tether "+r.d.Command+" failed", err.Error())
	}
	if deps != nil {
		deps.finish(ctx, rep, err)
	}

	env := ""
	if !dry {
		env = r.in.Environment
	}
	mdOpts := report.DeployMarkdownOptions{Commit: sha, Environment: env}
	if rep != nil {
		mdOpts.Limit = summaryRoom(r.getenv("GITHUB_STEP_SUMMARY"))
		if mdOpts.Limit > 0 {
			r.summary(report.DeployMarkdown(rep, mdOpts))
		}
	}
	if err != nil {
		r.summary(report.FailureMarkdown("tether "+r.d.Command+" failed", "", err.Error(), summaryRoom(r.getenv("GITHUB_STEP_SUMMARY"))))
	}
	if rep != nil && !rollback && r.ev.Push != nil && r.in.Comment && r.api.enabled() {
		r.mergedPRComments(ctx, rep, mdOpts)
	}

	res := Result{Command: r.d.Command, Event: r.eventName(), Reason: r.d.Reason, Report: rep, ExitCode: code}
	if err != nil {
		res.Error = err.Error()
	}
	var ok, rolledBack, failed []string
	if rep != nil {
		for _, res := range rep.Results {
			switch {
			case res.Status.OK():
				ok = append(ok, res.Node)
			case res.Status == deploy.StatusRolledBack && !rollback:
				rolledBack = append(rolledBack, res.Node)
			default:
				failed = append(failed, res.Node)
			}
		}
	}
	if rollback {
		r.writeOutputs(res, nil, ok, failed)
	} else {
		r.writeOutputs(res, ok, rolledBack, failed)
	}
	return code
}

// mergedPRComments tells the pull requests merged as this commit what was
// deployed where, in one sticky comment each.
func (r *run) mergedPRComments(ctx context.Context, rep *deploy.Report, mdOpts report.DeployMarkdownOptions) {
	prs := r.api.mergedPullRequests(ctx, r.ghc.SHA)
	if len(prs) == 0 {
		return
	}
	mdOpts.RunURL = r.runURL
	r.comment(ctx, "deploy", prs, r.ghc.SHA, func(limit int) string {
		mdOpts.Limit = limit
		return report.DeployMarkdown(rep, mdOpts)
	})
}

// nodeGroups prints each node's held log and outcome as one log group.
func (r *run) nodeGroups(rep *deploy.Report) {
	if rep != nil {
		for i := range rep.Results {
			res := &rep.Results[i]
			lines, dropped, _ := r.progress.takeNode(res.Node)
			r.group(fmt.Sprintf("%s: %s", res.Node, res.Status), lines, dropped, resultLines(rep, res))
		}
	}
	for _, n := range r.progress.remaining() {
		lines, dropped, _ := r.progress.takeNode(n)
		r.group(n, lines, dropped, nil)
	}
}

func (r *run) group(title string, log []string, dropped int, tail []string) {
	lines := append(append([]string(nil), log...), tail...)
	if dropped > 0 {
		lines = append([]string{fmt.Sprintf("(%d earlier lines not kept)", dropped)}, lines...)
	}
	r.act.Group(title)
	r.log.untrusted(lines...)
	r.act.EndGroup()
}

// resultLines describe a node's outcome inside its log group.
func resultLines(rep *deploy.Report, res *deploy.Result) []string {
	_, desc := statusFor(rep, res)
	lines := []string{"── " + string(res.Status) + ": " + desc}
	add := func(k, v string) {
		if v != "" {
			lines = append(lines, fmt.Sprintf("%-12s%s", k+":", v))
		}
	}
	add("previous", res.Previous)
	add("new", res.New)
	if res.Current != res.New {
		add("now on", res.Current)
	}
	if res.Generation > 0 {
		add("generation", fmt.Sprint(res.Generation))
	}
	add("deploy id", res.DeployID)
	if res.Error != "" {
		lines = append(lines, "error:")
		for _, l := range strings.Split(strings.TrimRight(res.Error, "\n"), "\n") {
			lines = append(lines, "  "+l)
		}
	}
	return lines
}

// annotateResults adds an annotation for every node that did not simply
// succeed, so the run's page lists them.
func (r *run) annotateResults(rep *deploy.Report) {
	for i := range rep.Results {
		res := &rep.Results[i]
		_, desc := statusFor(rep, res)
		msg := res.Error
		if msg == "" {
			msg = desc
		}
		title := fmt.Sprintf("tether %s: %s %s", r.d.Command, res.Node, res.Status)
		switch res.Status {
		case deploy.StatusDeployed, deploy.StatusDryActivated:
		case deploy.StatusRebootRequired:
			r.annotate("notice", title, desc)
		case deploy.StatusSkipped:
			r.annotate("warning", title, msg)
		default:
			r.annotate("error", title, msg)
		}
	}
}

// annotate prints a ::error::, ::warning:: or ::notice:: with a title,
// keeping the message to its first lines.
func (r *run) annotate(level, title, msg string) {
	lines := strings.Split(strings.TrimRight(msg, "\n"), "\n")
	if len(lines) > 20 {
		lines = append(lines[:20], fmt.Sprintf("… %d more lines in the log", len(lines)-20))
	}
	a := r.act.WithFieldsMap(map[string]string{"title": title})
	msg = strings.Join(lines, "\n")
	switch level {
	case "error":
		a.Errorf("%s", msg)
	case "warning":
		a.Warningf("%s", msg)
	default:
		a.Noticef("%s", msg)
	}
}

func (r *run) warn(title, msg string)   { r.annotate("warning", title, msg) }
func (r *run) notice(title, msg string) { r.annotate("notice", title, msg) }

// summary appends to the job summary, when the runner provides one.
func (r *run) summary(md string) {
	path := r.getenv("GITHUB_STEP_SUMMARY")
	if path == "" {
		return
	}
	if err := appendSummary(path, r.sec.redact(md)); err != nil {
		r.warn("Job summary", err.Error())
	}
}

// writeOutputs sets the step's outputs: result (JSON) and the node lists,
// space separated.
func (r *run) writeOutputs(res Result, deployed, rolledBack, failed []string) {
	path := r.getenv("GITHUB_OUTPUT")
	if path == "" {
		return
	}
	js, err := json.Marshal(res)
	if err != nil {
		r.warn("Outputs", err.Error())
		return
	}
	outs := []output{
		{"result", r.sec.redact(string(js))},
		{"deployed", strings.Join(deployed, " ")},
		{"rolled-back", strings.Join(rolledBack, " ")},
		{"failed", strings.Join(failed, " ")},
	}
	if err := writeOutputs(path, outs); err != nil {
		r.warn("Outputs", err.Error())
	}
}
