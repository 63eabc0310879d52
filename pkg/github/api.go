package github

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	gh "github.com/google/go-github/v60/github"
)

// DefaultAPITimeout bounds each API call. Reporting must never hold up or
// fail a deploy, so a slow API costs at most this per call, and two calls
// in a row that time out or fail on the server's side turn reporting off
// for the rest of the run.
const DefaultAPITimeout = 15 * time.Second

// maxTransientFailures is how many timeouts or 5xx in a row turn the API
// off for the run.
const maxTransientFailures = 2

// api wraps the REST client with the action's rules: bounded calls,
// failures reported as warnings and never returned to the deploy, and a
// breaker that stops calling an API that is down, rate limited or refuses
// the token.
type api struct {
	client  *gh.Client
	owner   string
	repo    string
	timeout time.Duration
	// v1 is set for servers with the /api/v1 flavour of the API: the same
	// paths for comments, no Deployments API.
	v1 bool
	// warn prints a ::warning:: annotation; notice a ::notice::.
	warn, notice func(title, msg string)
	// token is the one the client sends, kept to tell its kind.
	token string
	// sec are replaced in every text sent (comments, descriptions):
	// they quote nodes' errors, and are readable by everyone who can
	// read the repository. Redact before cutting to a length, or a cut
	// secret survives in part.
	sec secrets

	mu       sync.Mutex
	self     *identity // who the token is, once asked
	off      string    // why the API is no longer called; "" while on
	failures int       // transient failures in a row
}

// apiV1 tells a GitHub-compatible forge with the /api/v1 flavour of the API
// from GitHub: the API lives under /api/v1, and its runners say so in their
// own environment variable.
func apiV1(apiURL string, getenv func(string) string) bool {
	u, err := url.Parse(apiURL)
	if err == nil && strings.HasSuffix(strings.TrimRight(u.Path, "/"), "/api/v1") {
		return true
	}
	return getenv("GITEA_ACTIONS") == "true" || getenv("FORGEJO_ACTIONS") == "true"
}

// newAPI makes the client for apiURL (GITHUB_API_URL: https://api.github.com,
// https://ghe.example.com/api/v3, https://git.example.com/api/v1).
func newAPI(apiURL, repository, token string, sec secrets, hc *http.Client, timeout time.Duration, v1 bool, warn, notice func(title, msg string)) (*api, error) {
	owner, repo, ok := strings.Cut(repository, "/")
	if !ok || owner == "" || repo == "" {
		return nil, fmt.Errorf("GITHUB_REPOSITORY %q is not owner/name", repository)
	}
	base, err := url.Parse(strings.TrimRight(apiURL, "/") + "/")
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, fmt.Errorf("GITHUB_API_URL %q is not an http(s) URL", apiURL)
	}
	if hc == nil {
		hc = &http.Client{Timeout: 2 * timeout}
	}
	c := gh.NewClient(hc).WithAuthToken(token)
	c.BaseURL = base
	c.UserAgent = "tether-action"
	return &api{client: c, owner: owner, repo: repo, timeout: timeout, v1: v1, warn: warn, notice: notice, token: token, sec: sec}, nil
}

// offAPI is an api that is never called, for a run without a token or
// without a repository.
func offAPI(why string) *api { return &api{off: why} }

// enabled reports whether calls are still made.
func (a *api) enabled() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.off == ""
}

// call runs one API request with its own deadline, detached from the
// run's cancellation so that final statuses are still reported when the
// deploy was interrupted. It returns the request's error after reporting
// it; callers use the error only to choose what to do next.
func (a *api) call(ctx context.Context, what string, fn func(ctx context.Context) (*gh.Response, error)) error {
	return a.callExpecting(ctx, what, nil, fn)
}

// callExpecting is call for a request where the statuses expected (a 404
// that means "none") are an answer, not a failure to report.
func (a *api) callExpecting(ctx context.Context, what string, expected []int, fn func(ctx context.Context) (*gh.Response, error)) error {
	if !a.enabled() {
		return errAPIOff
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.timeout)
	defer cancel()
	resp, err := fn(ctx)
	if err == nil || slices.Contains(expected, statusOf(err)) && statusOf(err) != 0 {
		a.mu.Lock()
		a.failures = 0
		a.mu.Unlock()
		return err
	}
	a.fail(what, resp, err)
	return err
}

var errAPIOff = errors.New("API reporting is off")

// fail reports a failed call as a warning and decides whether to stop
// calling the API.
func (a *api) fail(what string, resp *gh.Response, err error) {
	status := 0
	if resp != nil && resp.Response != nil {
		status = resp.StatusCode
	}
	var rle *gh.RateLimitError
	var abuse *gh.AbuseRateLimitError
	var off string
	switch {
	case errors.As(err, &rle) || errors.As(err, &abuse) || status == http.StatusTooManyRequests:
		off = "the API rate limit was reached"
	case status == http.StatusUnauthorized:
		off = "the token was refused (401)"
	case status == 0 || status >= 500:
		a.mu.Lock()
		a.failures++
		if a.failures >= maxTransientFailures {
			off = fmt.Sprintf("%d calls in a row failed", a.failures)
		}
		a.mu.Unlock()
	}
	a.warn("GitHub API", fmt.Sprintf("%s: %s", what, describeAPIError(status, err)))
	if off != "" {
		a.mu.Lock()
		first := a.off == ""
		if first {
			a.off = off
		}
		a.mu.Unlock()
		if first {
			a.warn("GitHub API", fmt.Sprintf("%s: no more comments, deployments or statuses this run; the deploy itself is not affected", off))
		}
	}
}

// describeAPIError is a short reason: the status and the API's message,
// or the transport error.
func describeAPIError(status int, err error) string {
	var er *gh.ErrorResponse
	switch {
	case errors.As(err, &er) && er.Response != nil:
		msg := er.Message
		if msg == "" {
			msg = http.StatusText(status)
		}
		return fmt.Sprintf("%d %s", status, msg)
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer in time"
	}
	return err.Error()
}

// statusOf is the HTTP status of a failed call, 0 when there was none.
func statusOf(err error) int {
	var er *gh.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		return er.Response.StatusCode
	}
	var rle *gh.RateLimitError
	if errors.As(err, &rle) && rle.Response != nil {
		return rle.Response.StatusCode
	}
	return 0
}
