package github

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"unicode/utf8"

	gh "github.com/google/go-github/v60/github"

	"github.com/tetherdeploy/tether/pkg/deploy"
)

// maxDescription is the longest description a deployment status takes.
const maxDescription = 140

// deployments reports one GitHub deployment per node, in the environment
// "<environment>/<node>": each node has its own history and its own
// "currently deployed" entry, and a new successful deployment of one node
// marks only that node's previous one inactive.
type deployments struct {
	api         *api
	environment string
	sha         string
	task        string // "deploy" or "deploy:rollback"
	logURL      string

	mu  sync.Mutex
	off bool // not available here, or not allowed: skip the rest
	ids map[string]int64
}

func newDeployments(a *api, environment, sha, task, logURL string) *deployments {
	d := &deployments{api: a, environment: environment, sha: sha, task: task, logURL: logURL, ids: map[string]int64{}}
	if a.v1 && a.enabled() {
		a.notice("Deployments", "this server (/api/v1) has no Deployments API: deployments are not recorded; the job summary has the results")
		d.off = true
	}
	return d
}

// EnvironmentName is the deployments environment of one node.
func EnvironmentName(environment, node string) string {
	return environment + "/" + node
}

// start creates each node's deployment and marks it in progress.
func (d *deployments) start(ctx context.Context, nodes []string) {
	for _, n := range nodes {
		if d.create(ctx, n) {
			d.status(ctx, n, "in_progress", "deploying "+d.sha7())
		}
	}
}

// finish sets every node's final status from the report; nodes that were
// not started get their deployment now. runErr explains nodes the report
// lacks (or a missing report).
func (d *deployments) finish(ctx context.Context, rep *deploy.Report, runErr error) {
	seen := map[string]bool{}
	if rep != nil {
		for i := range rep.Results {
			res := &rep.Results[i]
			seen[res.Node] = true
			if !d.has(res.Node) && !d.create(ctx, res.Node) {
				continue
			}
			state, desc := statusFor(rep, res)
			d.status(ctx, res.Node, state, desc)
		}
	}
	d.mu.Lock()
	var rest []string
	for n := range d.ids {
		if !seen[n] {
			rest = append(rest, n)
		}
	}
	d.mu.Unlock()
	for _, n := range sortedCopy(rest) {
		why := "the run ended without a result for this node"
		if runErr != nil {
			why = "failed: " + firstLine(runErr.Error())
		}
		d.status(ctx, n, "error", why)
	}
}

func (d *deployments) has(node string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.ids[node]
	return ok
}

func (d *deployments) enabled() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.off && d.api.enabled()
}

// create makes the node's deployment. A 404 means the server has no
// Deployments API (or the repository is not visible to the token) and a
// 403 that the token may not write deployments: either way the rest are
// skipped with one message.
func (d *deployments) create(ctx context.Context, node string) bool {
	if !d.enabled() {
		return false
	}
	env := EnvironmentName(d.environment, node)
	req := &gh.DeploymentRequest{
		Ref:                  gh.String(d.sha),
		Task:                 gh.String(d.task),
		AutoMerge:            gh.Bool(false),
		RequiredContexts:     &[]string{},
		Environment:          gh.String(env),
		Description:          gh.String(truncate(d.api.sec.redact(fmt.Sprintf("tether %s of %s", strings.TrimPrefix(d.task, "deploy:"), node)), maxDescription)),
		TransientEnvironment: gh.Bool(false),
		Payload:              map[string]string{"node": node},
	}
	var dep *gh.Deployment
	err := d.api.call(ctx, "create deployment for "+node, func(ctx context.Context) (*gh.Response, error) {
		r, resp, err := d.api.client.Repositories.CreateDeployment(ctx, d.api.owner, d.api.repo, req)
		dep = r
		return resp, err
	})
	if err != nil {
		switch statusOf(err) {
		case http.StatusNotFound:
			d.disable("the Deployments API is not available here (404): deployments are not recorded")
		case http.StatusForbidden:
			d.disable("the token may not create deployments (403; the workflow needs `permissions: deployments: write`): deployments are not recorded")
		}
		return false
	}
	d.mu.Lock()
	d.ids[node] = dep.GetID()
	d.mu.Unlock()
	return true
}

func (d *deployments) disable(why string) {
	d.mu.Lock()
	first := !d.off
	d.off = true
	d.mu.Unlock()
	if first {
		d.api.notice("Deployments", why)
	}
}

// status adds a status to the node's deployment.
func (d *deployments) status(ctx context.Context, node, state, desc string) {
	d.mu.Lock()
	id, ok := d.ids[node]
	d.mu.Unlock()
	if !ok || !d.api.enabled() {
		return
	}
	req := &gh.DeploymentStatusRequest{
		State:       gh.String(state),
		Description: gh.String(truncate(d.api.sec.redact(desc), maxDescription)),
		Environment: gh.String(EnvironmentName(d.environment, node)),
	}
	if d.logURL != "" {
		req.LogURL = gh.String(d.logURL)
	}
	_ = d.api.call(ctx, fmt.Sprintf("set deployment status of %s to %s", node, state), func(ctx context.Context) (*gh.Response, error) {
		_, resp, err := d.api.client.Repositories.CreateDeploymentStatus(ctx, d.api.owner, d.api.repo, id, req)
		return resp, err
	})
}

func (d *deployments) sha7() string {
	if len(d.sha) > 7 {
		return d.sha[:7]
	}
	return d.sha
}

// statusFor maps a node's outcome to a deployment state and a short
// description: success when the node ends on the system it was asked to
// run, failure when it did not get there (and is back where it was),
// error when its state is unknown or it was never attempted.
func statusFor(rep *deploy.Report, res *deploy.Result) (state, desc string) {
	rollback := rep.Action.IsRollback()
	gen := ""
	if res.Generation > 0 {
		gen = fmt.Sprintf("generation %d", res.Generation)
	}
	why := firstLine(res.Reason)
	if why == "" {
		why = firstLine(res.Error)
	}
	withWhy := func(s string) string {
		if why == "" {
			return s
		}
		return s + ": " + why
	}
	switch res.Status {
	case deploy.StatusDeployed, deploy.StatusDryActivated:
		switch {
		case rollback && gen != "":
			return "success", "rolled back to " + gen
		case rollback:
			return "success", "rolled back"
		case res.Status == deploy.StatusDryActivated:
			return "success", "dry activation ran; nothing changed"
		case gen != "":
			return "success", "deployed " + gen
		}
		return "success", "deployed"
	case deploy.StatusRebootRequired:
		if gen != "" {
			return "success", "on " + gen + "; reboot required to finish"
		}
		return "success", "deployed; reboot required to finish"
	case deploy.StatusRolledBack:
		if rollback {
			return "failure", withWhy("rollback failed, node back on its previous system")
		}
		return "failure", withWhy("failed and rolled back")
	case deploy.StatusFailed:
		return "failure", withWhy("failed")
	case deploy.StatusUnreachable:
		return "failure", withWhy("unreachable")
	case deploy.StatusUncertain:
		return "error", withWhy("state uncertain, check the node")
	case deploy.StatusSkipped:
		return "error", "not attempted"
	}
	return "error", withWhy(string(res.Status))
}

// truncate shortens s to at most n characters, marking the cut.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// firstLine is the first non-empty line of s, blanks trimmed.
func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}
