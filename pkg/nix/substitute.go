package nix

import (
	"context"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CacheLimits bound what a store's binary caches may cost a command: with
// ConnectTimeout set, each download gets one attempt and that long to
// connect (nix's connect-timeout, which covers the name lookup, and
// download-attempts). The zero value leaves nix's own settings: five
// attempts with growing pauses, about 4.5 s for a cache that refuses or
// has no route, and more for one that does not answer.
type CacheLimits struct {
	ConnectTimeout time.Duration
}

func (l CacheLimits) args() []string {
	if l.ConnectTimeout <= 0 {
		return nil
	}
	secs := max(1, int(math.Ceil(l.ConnectTimeout.Seconds())))
	return []string{"--option", "connect-timeout", strconv.Itoa(secs), "--option", "download-attempts", "1"}
}

// Substitute asks the store to fetch the given (output) paths from its
// configured binary caches. Paths that no cache has make it fail; callers
// check validity afterwards and treat the rest as still missing.
func (r *Runner) Substitute(ctx context.Context, paths []string, limits CacheLimits) error {
	for _, c := range chunks(dedupe(paths)) {
		args := append([]string{"--realise", "--ignore-unknown"}, limits.args()...)
		if err := r.run(ctx, r.storeArgv(append(args, c...)...), nil, nil); err != nil {
			return fmt.Errorf("substitute %d paths: %w", len(c), err)
		}
	}
	return nil
}

// Substitutable is what a store's binary caches can provide.
type Substitutable struct {
	// Paths are the paths asked about that some cache has.
	Paths []string
	// Unreachable lists the caches the store could not reach, or that
	// did not answer as binary caches do.
	Unreachable []string
}

// Substitutable asks the store's binary caches, downloading nothing but
// their answers, which of paths they can provide: `nix-store --realise
// --dry-run`, whose report nix prints the same from 2.8 on. With limits,
// a cache the store cannot reach costs one bounded attempt, and is named
// in Unreachable from nix's warnings.
func (r *Runner) Substitutable(ctx context.Context, paths []string, limits CacheLimits) (Substitutable, error) {
	var res Substitutable
	for _, c := range chunks(dedupe(paths)) {
		args := append([]string{"--realise", "--dry-run"}, limits.args()...)
		// nix reports on stderr: a runner of its own keeps it, in place
		// of the log.
		var stderr strings.Builder
		probe := &Runner{Exec: r.Exec, Store: r.Store, Log: &limitedWriter{w: &stderr, n: 1 << 20}}
		if err := probe.run(ctx, probe.storeArgv(append(args, c...)...), nil, nil); err != nil {
			return res, fmt.Errorf("ask binary caches for %d paths: %w", len(c), err)
		}
		fetch, unreachable := parseDryRun(stderr.String())
		res.Paths = append(res.Paths, fetch...)
		for _, u := range unreachable {
			if !slices.Contains(res.Unreachable, u) {
				res.Unreachable = append(res.Unreachable, u)
			}
		}
	}
	return res, nil
}

var (
	// unable to download 'https://cache.example/nix-cache-info': Couldn't resolve host name (6)
	// unable to download 'http://10.0.0.1/abc….narinfo': Couldn't connect to server (7)
	downloadFailedRE = regexp.MustCompile(`unable to download '([a-z0-9+]+://[^' ]*)/(?:nix-cache-info|[a-z0-9]+\.narinfo)'`)
	// 'https://cache.example' does not appear to be a binary cache
	notACacheRE = regexp.MustCompile(`'([a-z0-9+]+://[^' ]*)' does not appear to be a binary cache`)
)

// parseDryRun reads what `nix-store --realise --dry-run` printed: the
// paths under "will be fetched" (nix says "this path" or "these [N]
// paths"), and the caches its warnings say it could not use.
func parseDryRun(out string) (fetch, unreachable []string) {
	inFetch := false
	for _, line := range strings.Split(out, "\n") {
		if m := downloadFailedRE.FindStringSubmatch(line); m != nil {
			unreachable = appendNew(unreachable, m[1])
		}
		if m := notACacheRE.FindStringSubmatch(line); m != nil {
			unreachable = appendNew(unreachable, m[1])
		}
		switch {
		case strings.Contains(line, "will be fetched"):
			inFetch = true
		case inFetch && strings.HasPrefix(line, "  /"):
			fetch = append(fetch, strings.TrimSpace(line))
		default:
			inFetch = false
		}
	}
	return fetch, unreachable
}

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// limitedWriter keeps the first n bytes written to it and drops the rest:
// a dry run lists every path, and a closure may have tens of thousands.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(l.n, len(p))
		l.n -= k
		if _, err := l.w.Write(p[:k]); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}
