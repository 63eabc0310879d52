package runner

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"

	"github.com/tetherdeploy/tether/pkg/agent"
)

// profileState is where a profile points: the store path and, when it goes
// through a generation link as nix-env makes it, that generation's number.
type profileState struct {
	Path       string // "" when the profile does not exist
	Generation int    // 0 when the profile is not a generation link
}

func generationLink(profile string, n int) string {
	return fmt.Sprintf("%s-%d-link", profile, n)
}

func generationRE(profile string) *regexp.Regexp {
	return regexp.MustCompile(`^` + regexp.QuoteMeta(filepath.Base(profile)) + `-([0-9]+)-link$`)
}

// readLink returns a symlink's target as an absolute path.
func readLink(link string) (string, error) {
	t, err := os.Readlink(link)
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(t) {
		t = filepath.Join(filepath.Dir(link), t)
	}
	return t, nil
}

// readProfile reads a profile without nix: the profile is a symlink to
// `<name>-<N>-link`, which is a symlink to the store path.
func readProfile(profile string) (profileState, error) {
	fi, err := os.Lstat(profile)
	if errors.Is(err, fs.ErrNotExist) {
		return profileState{}, nil
	}
	if err != nil {
		return profileState{}, fmt.Errorf("read profile: %w", err)
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		return profileState{}, fmt.Errorf("profile %s is not a symlink", profile)
	}
	target, err := readLink(profile)
	if err != nil {
		return profileState{}, fmt.Errorf("read profile: %w", err)
	}
	if filepath.Dir(target) == filepath.Dir(profile) {
		if m := generationRE(profile).FindStringSubmatch(filepath.Base(target)); m != nil {
			n, _ := strconv.Atoi(m[1])
			path, err := readLink(target)
			if err != nil {
				return profileState{}, fmt.Errorf("read profile generation %d: %w", n, err)
			}
			return profileState{Path: path, Generation: n}, nil
		}
	}
	return profileState{Path: target}, nil
}

// listGenerations lists a profile's generations, oldest first, without nix
// (its own listing needs a writable profile lock and prints text).
func listGenerations(profile string) ([]agent.Generation, error) {
	cur, err := readProfile(profile)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(filepath.Dir(profile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list generations: %w", err)
	}
	re := generationRE(profile)
	var gens []agent.Generation
	for _, e := range entries {
		m := re.FindStringSubmatch(e.Name())
		if m == nil || e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		n, err := strconv.Atoi(m[1])
		if err != nil {
			continue
		}
		link := filepath.Join(filepath.Dir(profile), e.Name())
		path, err := readLink(link)
		if err != nil {
			continue
		}
		g := agent.Generation{Number: n, Path: path, Current: n == cur.Generation}
		if fi, err := os.Lstat(link); err == nil {
			g.Date = fi.ModTime().UTC()
		}
		gens = append(gens, g)
	}
	sort.Slice(gens, func(i, j int) bool { return gens[i].Number < gens[j].Number })
	return gens, nil
}

// nixEnv runs nix-env on a profile and keeps its error output on failure.
func (r *Runner) nixEnv(ctx context.Context, profile string, args ...string) error {
	return r.runTool(ctx, append([]string{"nix-env", "-p", profile}, args...)...)
}

// setProfile points the profile at closure and returns the new generation.
func (r *Runner) setProfile(ctx context.Context, profile, closure string) (int, error) {
	if err := os.MkdirAll(filepath.Dir(profile), 0o755); err != nil {
		return 0, fmt.Errorf("set profile: %w", err)
	}
	if err := r.nixEnv(ctx, profile, "--set", closure); err != nil {
		return 0, fmt.Errorf("set profile: %w", err)
	}
	st, err := readProfile(profile)
	if err != nil {
		return 0, fmt.Errorf("set profile: %w", err)
	}
	if st.Path != closure {
		return st.Generation, fmt.Errorf("set profile: %s points at %q after nix-env --set, not %s", profile, st.Path, closure)
	}
	return st.Generation, nil
}
