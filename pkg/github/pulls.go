package github

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	gh "github.com/google/go-github/v60/github"
)

// maxMergedPRs bounds how many pull requests one deploy comments on.
const maxMergedPRs = 3

// mergedPullRequests returns the numbers of the pull requests that were
// merged as sha: merged, and whose merge commit is sha. The commit's
// association alone is not enough (a branch's commits belong to open pull
// requests too; the /api/v1 servers' endpoint answers for unrelated
// commits).
func (a *api) mergedPullRequests(ctx context.Context, sha string) []int {
	var prs []*gh.PullRequest
	if a.v1 {
		// /api/v1 servers answer with the one pull request, or 404.
		var pr gh.PullRequest
		err := a.callExpecting(ctx, "find the pull request of "+sha, []int{http.StatusNotFound}, func(ctx context.Context) (*gh.Response, error) {
			req, err := a.client.NewRequest(http.MethodGet, fmt.Sprintf("repos/%s/%s/commits/%s/pull", url.PathEscape(a.owner), url.PathEscape(a.repo), url.PathEscape(sha)), nil)
			if err != nil {
				return nil, err
			}
			return a.client.Do(ctx, req, &pr)
		})
		if err != nil {
			return nil
		}
		prs = []*gh.PullRequest{&pr}
	} else {
		err := a.call(ctx, "find the pull requests of "+sha, func(ctx context.Context) (*gh.Response, error) {
			list, resp, err := a.client.PullRequests.ListPullRequestsWithCommit(ctx, a.owner, a.repo, sha, &gh.ListOptions{PerPage: 100})
			prs = list
			return resp, err
		})
		if err != nil {
			return nil
		}
	}
	var out []int
	for _, pr := range prs {
		merged := pr.MergedAt != nil || pr.GetMerged()
		if merged && pr.GetMergeCommitSHA() == sha && pr.GetNumber() > 0 && len(out) < maxMergedPRs {
			out = append(out, pr.GetNumber())
		}
	}
	return out
}
