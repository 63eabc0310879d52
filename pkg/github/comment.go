package github

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	gh "github.com/google/go-github/v60/github"
)

// maxCommentPages bounds the search for the sticky comment (100 a page).
const maxCommentPages = 50

// commentLimit is the longest comment body GitHub accepts.
const commentLimit = 65536

// marker is the hidden first line that finds the action's own comment
// again: kind is "plan" or "deploy"; key tells apart workflows and jobs
// that comment on the same pull request, so they do not overwrite each
// other. Only letters, digits and ._/- are kept from the key, so it can
// neither end the HTML comment nor carry markup.
func marker(kind, key string) string {
	var b strings.Builder
	dash := false
	for _, r := range key {
		ok := r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._/", r))
		if !ok {
			// One dash for any run of others, so "--" (which would end
			// an HTML comment early in some parsers) never appears.
			if !dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = true
			continue
		}
		dash = false
		b.WriteRune(r)
	}
	k := strings.TrimRight(b.String(), "-")
	if len(k) > 100 {
		k = k[:100]
	}
	if k == "" {
		return fmt.Sprintf("<!-- tether:%s -->", kind)
	}
	return fmt.Sprintf("<!-- tether:%s %s -->", kind, k)
}

// upsertComment keeps one comment per marker on an issue or pull request:
// it edits the comment whose body starts with the marker, searching every
// page, and creates one when there is none (the first run, or after
// someone deleted it). When the comment it found cannot be edited (deleted
// meanwhile, or written by someone else who copied the marker), it
// creates a new one. It returns the comment's URL, or "" when reporting
// failed (already warned about).
func (a *api) upsertComment(ctx context.Context, number int, mark, body string) string {
	body = mark + "\n" + body
	existing, ok := a.findComment(ctx, number, mark)
	if !ok {
		return ""
	}
	if existing != nil {
		var edited *gh.IssueComment
		err := a.call(ctx, fmt.Sprintf("update comment %d on #%d", existing.GetID(), number), func(ctx context.Context) (*gh.Response, error) {
			c, resp, err := a.client.Issues.EditComment(ctx, a.owner, a.repo, existing.GetID(), &gh.IssueComment{Body: &body})
			edited = c
			return resp, err
		})
		if err == nil {
			return edited.GetHTMLURL()
		}
		if s := statusOf(err); s != http.StatusNotFound && s != http.StatusForbidden {
			return ""
		}
	}
	var created *gh.IssueComment
	err := a.call(ctx, fmt.Sprintf("comment on #%d", number), func(ctx context.Context) (*gh.Response, error) {
		c, resp, err := a.client.Issues.CreateComment(ctx, a.owner, a.repo, number, &gh.IssueComment{Body: &body})
		created = c
		return resp, err
	})
	if err != nil {
		return ""
	}
	return created.GetHTMLURL()
}

// findComment returns the comment carrying the marker, preferring one
// written by a bot (the token's own account on GitHub), or nil when there
// is none. ok is false when listing failed.
func (a *api) findComment(ctx context.Context, number int, mark string) (found *gh.IssueComment, ok bool) {
	opts := &gh.IssueListCommentsOptions{ListOptions: gh.ListOptions{PerPage: 100}}
	for page := 1; page != 0 && page <= maxCommentPages; {
		opts.Page = page
		var comments []*gh.IssueComment
		var next int
		err := a.call(ctx, fmt.Sprintf("list comments of #%d", number), func(ctx context.Context) (*gh.Response, error) {
			cs, resp, err := a.client.Issues.ListComments(ctx, a.owner, a.repo, number, opts)
			comments = cs
			if resp != nil {
				next = resp.NextPage
			}
			return resp, err
		})
		if err != nil {
			return nil, false
		}
		for _, c := range comments {
			if !hasMarker(c.GetBody(), mark) {
				continue
			}
			if c.GetUser().GetType() == "Bot" {
				return c, true
			}
			if found == nil {
				found = c
			}
		}
		page = next
	}
	return found, true
}

// hasMarker reports whether body begins with the marker line.
func hasMarker(body, mark string) bool {
	rest, ok := strings.CutPrefix(body, mark)
	return ok && (rest == "" || rest[0] == '\n' || rest[0] == '\r')
}
