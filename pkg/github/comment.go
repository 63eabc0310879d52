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
// it edits the comment that starts with the marker and that the token's
// own identity wrote (see whoAmI), searching every page, and creates one
// when there is none (the first run, after someone deleted it, or when
// the only comments with the marker are someone else's). A token that may
// edit others' comments (a maintainer's) would otherwise let anyone who
// copies the marker into a comment have tether write its plan under their
// name, where they can change it afterwards. It returns the comment's
// URL, or "" when reporting failed (already warned about).
func (a *api) upsertComment(ctx context.Context, number int, mark, body string) string {
	body = mark + "\n" + a.sec.redact(body)
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

// findComment returns the oldest comment that carries the marker and was
// written by the token's identity, or nil when there is none. ok is false
// when listing failed, or when who the token is could not be told.
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
			self, ok := a.whoAmI(ctx)
			if !ok {
				return nil, false
			}
			if self.wrote(c) {
				return c, true
			}
		}
		page = next
	}
	return nil, true
}

// identity is who the token acts as.
type identity struct {
	id    int64 // 0 when not known
	login string
	bot   bool // an app's bot user
}

// actionsBot is who the token that GitHub gives every workflow run acts
// as: the GitHub Actions app's bot user. A person's login cannot hold
// brackets, so no one else can write as it.
var actionsBot = identity{login: "github-actions[bot]", bot: true}

// wrote reports whether c was written by id: by user ID when both are
// known (logins can be renamed), by login otherwise.
func (id identity) wrote(c *gh.IssueComment) bool {
	u := c.GetUser()
	if id.bot && u.GetType() != "Bot" {
		return false
	}
	if id.id != 0 && u.GetID() != 0 {
		return u.GetID() == id.id
	}
	return id.login != "" && strings.EqualFold(u.GetLogin(), id.login)
}

// whoAmI tells who the token is, asking once per run. A personal or OAuth
// token is a user: GET /user names it. An app installation token cannot
// ask that (GitHub answers 403 "Resource not accessible by integration"),
// and nothing an installation token may call names its app; installation
// tokens start with "ghs_", and GET /user is not even tried for them.
// Such a token is taken for the run's own token, whose comments are the
// Actions bot's. With another app's token no comment matches, so tether
// comments anew rather than edit a comment it cannot prove its own.
// ok is false when the API could not be asked (already warned about).
func (a *api) whoAmI(ctx context.Context) (identity, bool) {
	a.mu.Lock()
	self := a.self
	a.mu.Unlock()
	if self != nil {
		return *self, true
	}
	id := actionsBot
	if !strings.HasPrefix(a.token, "ghs_") {
		var u *gh.User
		err := a.callExpecting(ctx, "find the token's user", []int{http.StatusForbidden, http.StatusNotFound}, func(ctx context.Context) (*gh.Response, error) {
			user, resp, err := a.client.Users.Get(ctx, "")
			u = user
			return resp, err
		})
		switch {
		case err == nil:
			id = identity{id: u.GetID(), login: u.GetLogin(), bot: u.GetType() == "Bot"}
		case statusOf(err) == 0 || statusOf(err) >= 500 || statusOf(err) == http.StatusUnauthorized:
			return identity{}, false
		}
	}
	a.mu.Lock()
	a.self = &id
	a.mu.Unlock()
	return id, true
}

// hasMarker reports whether body begins with the marker line.
func hasMarker(body, mark string) bool {
	rest, ok := strings.CutPrefix(body, mark)
	return ok && (rest == "" || rest[0] == '\n' || rest[0] == '\r')
}
