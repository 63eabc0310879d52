package agentbin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tetherdeploy/tether/pkg/agent"
)

// maker produces agents for a Source: from the agents embedded in the
// binary, or by building them.
type maker interface {
	// want is the SHA-256 the agent for goarch must have when that is
	// known before it is made, "" when only making it tells.
	want(goarch string) (string, error)
	// remake says whether a cached agent must still be made again and
	// compared: a working tree's source may have changed since.
	remake() bool
	// make writes the agent for goarch to path, which does not exist.
	// first says no agent for goarch was cached before.
	make(ctx context.Context, goarch, path string, first bool) error
}

// Source is a deploy.AgentSource whose agents live in a private cache
// directory, made by a maker when they are missing.
type Source struct {
	// ctx bounds the builds: deploy.AgentSource carries no context, so
	// the source keeps the one of the command that found it.
	ctx context.Context
	dir string
	log io.Writer
	m   maker

	mu    sync.Mutex
	archs map[string]*archAgent
}

// archAgent is one architecture's answer, found once per process however
// many nodes ask at once.
type archAgent struct {
	once      sync.Once
	path, sum string
	err       error
}

// cacheElems is the cache's place under the user's cache directory.
var cacheElems = []string{"tether", "agents"}

// openCache returns a Source keeping its agents in
// <user cache dir>/tether/agents/<key>, after checking that every level of
// it is private to the user.
func openCache(ctx context.Context, o Options, key string, m maker) (*Source, error) {
	root := o.CacheDir
	if root == "" {
		var err error
		if root, err = userCacheDir(o.Getenv, runtime.GOOS); err != nil {
			return nil, fmt.Errorf("find the cache directory for the tether agents: %w (or pass --agents-dir)", err)
		}
	}
	dir, err := privateDir(root, append(cacheElems, key)...)
	if err != nil {
		return nil, err
	}
	return &Source{ctx: ctx, dir: dir, log: o.Log, m: m, archs: map[string]*archAgent{}}, nil
}

// Dir is the directory holding the cached agents.
func (s *Source) Dir() string { return s.dir }

// Agent implements deploy.AgentSource: it returns a cached agent whose
// content matches the SHA-256 in its name, making it first if needed.
func (s *Source) Agent(goarch string) (string, string, error) {
	s.mu.Lock()
	a := s.archs[goarch]
	if a == nil {
		a = &archAgent{}
		s.archs[goarch] = a
	}
	s.mu.Unlock()
	a.once.Do(func() { a.path, a.sum, a.err = s.get(goarch) })
	return a.path, a.sum, a.err
}

func (s *Source) get(goarch string) (string, string, error) {
	name := agent.AgentFileName(goarch)
	want, err := s.m.want(goarch)
	if err != nil {
		return "", "", err
	}
	have := s.cached(name)
	if want != "" {
		if c, ok := have.find(want); ok {
			return c.path, c.sum, nil
		}
	} else if len(have) > 0 && !s.m.remake() {
		return have[0].path, have[0].sum, nil
	}

	tmp := filepath.Join(s.dir, "."+name+".tmp-"+randomHex())
	defer os.Remove(tmp) // a no-op once renamed
	if err := s.m.make(s.ctx, goarch, tmp, len(have) == 0); err != nil {
		return "", "", err
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		return "", "", fmt.Errorf("agent for linux/%s: %w", goarch, err)
	}
	sum, err := privateFileSum(tmp)
	if err != nil {
		return "", "", fmt.Errorf("agent for linux/%s: %w", goarch, err)
	}
	if want != "" && sum != want {
		return "", "", fmt.Errorf("agent for linux/%s: written with sha256 %s, want %s", goarch, sum, want)
	}
	if c, ok := have.find(sum); ok {
		return c.path, c.sum, nil
	}
	final := filepath.Join(s.dir, name+"-"+sum)
	if err := os.Rename(tmp, final); err != nil {
		return "", "", fmt.Errorf("agent for linux/%s: %w", goarch, err)
	}
	if len(have) > 0 && want == "" {
		fmt.Fprintf(s.log, "rebuilt the tether agent for linux/%s: its source changed\n", goarch)
	}
	s.prune(name, final)
	return final, sum, nil
}

type cachedAgent struct {
	path, sum string
	mtime     time.Time
}

type cachedAgents []cachedAgent

func (cs cachedAgents) find(sum string) (cachedAgent, bool) {
	for _, c := range cs {
		if c.sum == sum {
			return c, true
		}
	}
	return cachedAgent{}, false
}

// cached lists the agents named name-<sha256> whose content matches
// their name, newest first. The others are removed and said so: a
// mismatch is a corrupt or altered file, and it is never handed out.
func (s *Source) cached(name string) cachedAgents {
	entries, _ := os.ReadDir(s.dir)
	var out cachedAgents
	for _, e := range entries {
		sum, ok := strings.CutPrefix(e.Name(), name+"-")
		if !ok || !isSHA256(sum) {
			continue
		}
		p := filepath.Join(s.dir, e.Name())
		got, err := privateFileSum(p)
		if err == nil && got != sum {
			err = fmt.Errorf("its content has sha256 %s", got)
		}
		if err != nil {
			fmt.Fprintf(s.log, "removed the cached tether agent %s: %v\n", p, err)
			os.Remove(p)
			continue
		}
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		out = append(out, cachedAgent{path: p, sum: sum, mtime: fi.ModTime()})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].mtime.After(out[j].mtime) })
	return out
}

// anyCached reports whether an agent for any architecture is cached.
func (s *Source) anyCached() bool {
	for _, arch := range []string{"amd64", "arm64", "arm"} {
		if len(s.cached(agent.AgentFileName(arch))) > 0 {
			return true
		}
	}
	return false
}

// pruneAge is how old an agent that is no longer current, or a build's
// leftover, must be before it is removed: another tether run may still be
// uploading it.
const pruneAge = time.Hour

// prune removes name's other agents and leftover temporary files once
// they are older than pruneAge, so rebuilding from a changing working
// tree does not fill the cache.
func (s *Source) prune(name, keep string) {
	entries, _ := os.ReadDir(s.dir)
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, name+"-") && !strings.HasPrefix(n, "."+name+".tmp-") {
			continue
		}
		p := filepath.Join(s.dir, n)
		if p == keep {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > pruneAge {
			os.Remove(p)
		}
	}
}

// privateDir returns root joined with elems, creating each missing
// element with mode 0700 and refusing any that is a symlink, not a
// directory, owned by someone else, or open to others: what is kept there
// runs as root on the user's machines.
func privateDir(root string, elems ...string) (string, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", fmt.Errorf("create the cache directory for the tether agents: %w", err)
	}
	p := root
	for _, e := range elems {
		p = filepath.Join(p, e)
		if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("create the cache directory for the tether agents: %w", err)
		}
		if err := checkPrivateDir(p); err != nil {
			return "", fmt.Errorf("agent cache %s: %w; tether keeps the agents, which run as root on your machines, "+
				"only where no one else can change them: remove it and run again", p, err)
		}
	}
	return p, nil
}

func checkPrivateDir(p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return errors.New("it is a symlink")
	case !fi.IsDir():
		return errors.New("it is not a directory")
	}
	if err := ownedByMe(fi); err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("its mode is %04o, want 0700", perm)
	}
	return nil
}

// privateFileSum returns the hex SHA-256 of a regular file that belongs
// to the user and that no one else may write.
func privateFileSum(p string) (string, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", errors.New("it is not a regular file")
	}
	if err := ownedByMe(fi); err != nil {
		return "", err
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return "", fmt.Errorf("others may write it (mode %04o)", perm)
	}
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

func randomHex() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
