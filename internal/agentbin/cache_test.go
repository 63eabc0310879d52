package agentbin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
)

// fakeMaker makes agents whose content is content[goarch], counting the
// calls.
type fakeMaker struct {
	content  map[string]string
	remaking bool
	calls    atomic.Int32
	firsts   atomic.Int32
}

func (f *fakeMaker) want(string) (string, error) { return "", nil }
func (f *fakeMaker) remake() bool                { return f.remaking }
func (f *fakeMaker) make(_ context.Context, goarch, path string, first bool) error {
	f.calls.Add(1)
	if first {
		f.firsts.Add(1)
	}
	c, ok := f.content[goarch]
	if !ok {
		return fmt.Errorf("no agent for %s", goarch)
	}
	return os.WriteFile(path, []byte(c), 0o755)
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func open(t *testing.T, root string, m maker) (*Source, *bytes.Buffer) {
	t.Helper()
	var log bytes.Buffer
	s, err := openCache(context.Background(), Options{CacheDir: root, Log: &log}, "v1.0.0-abc", m)
	if err != nil {
		t.Fatal(err)
	}
	return s, &log
}

// agentOK checks that Agent returned a file whose content is want and
// whose sum is the one returned, in the private cache.
func agentOK(t *testing.T, s *Source, goarch, want string) string {
	t.Helper()
	p, got, err := s.Agent(goarch)
	if err != nil {
		t.Fatalf("Agent(%s): %v", goarch, err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want || got != sum(want) {
		t.Fatalf("Agent(%s) = %s with sum %s holding %q; want %q (sum %s)", goarch, p, got, b, want, sum(want))
	}
	if filepath.Dir(p) != s.Dir() {
		t.Errorf("agent %s is outside the cache %s", p, s.Dir())
	}
	return p
}

func TestCacheBuildsOnceAndReuses(t *testing.T) {
	root := t.TempDir()
	m := &fakeMaker{content: map[string]string{"amd64": "agent amd64 v1", "arm": "agent arm v1"}}
	s, log := open(t, root, m)
	p := agentOK(t, s, "amd64", "agent amd64 v1")
	agentOK(t, s, "amd64", "agent amd64 v1")
	if n := m.calls.Load(); n != 1 || m.firsts.Load() != 1 {
		t.Errorf("made %d times (%d first), want once, as the first", n, m.firsts.Load())
	}
	for _, d := range []string{filepath.Join(root, "tether"), filepath.Join(root, "tether", "agents"), s.Dir()} {
		fi, err := os.Lstat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 || !fi.IsDir() {
			t.Errorf("%s: mode %v, want a directory with 0700", d, fi.Mode())
		}
	}

	// A later run finds it without making it again.
	s2, _ := open(t, root, m)
	if got := agentOK(t, s2, "amd64", "agent amd64 v1"); got != p {
		t.Errorf("second run used %s, want the cached %s", got, p)
	}
	if n := m.calls.Load(); n != 1 {
		t.Errorf("made %d times over two runs, want once", n)
	}
	if log.Len() != 0 {
		t.Errorf("unexpected log: %s", log)
	}
	if _, _, err := s2.Agent("riscv64"); err == nil {
		t.Error("an architecture the maker cannot make gave no error")
	}
}

func TestCacheConcurrentNodesMakeOnce(t *testing.T) {
	m := &fakeMaker{content: map[string]string{"arm64": "agent arm64"}}
	s, _ := open(t, t.TempDir(), m)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := s.Agent("arm64"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := m.calls.Load(); n != 1 {
		t.Errorf("16 nodes at once made the agent %d times, want once", n)
	}
}

// TestCacheTamperedAgentIsRemade alters a cached agent in the ways an
// attacker or a broken disk would: the altered file is never handed out.
func TestCacheTamperedAgentIsRemade(t *testing.T) {
	const good = "agent amd64"
	tamper := map[string]func(t *testing.T, p string){
		"content changed": func(t *testing.T, p string) {
			if err := os.WriteFile(p, []byte("#!/bin/sh\nevil\n"), 0o700); err != nil {
				t.Fatal(err)
			}
		},
		"truncated": func(t *testing.T, p string) {
			if err := os.Truncate(p, 3); err != nil {
				t.Fatal(err)
			}
		},
		"replaced by a symlink": func(t *testing.T, p string) {
			other := filepath.Join(t.TempDir(), "agent")
			if err := os.WriteFile(other, []byte(good), 0o700); err != nil {
				t.Fatal(err)
			}
			os.Remove(p)
			if err := os.Symlink(other, p); err != nil {
				t.Fatal(err)
			}
		},
		"writable by others": func(t *testing.T, p string) {
			if err := os.Chmod(p, 0o777); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, alter := range tamper {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			m := &fakeMaker{content: map[string]string{"amd64": good}}
			s, _ := open(t, root, m)
			p := agentOK(t, s, "amd64", good)
			alter(t, p)

			s2, log := open(t, root, m)
			agentOK(t, s2, "amd64", good)
			if n := m.calls.Load(); n != 2 {
				t.Errorf("made %d times, want again after the tampering", n)
			}
			if !strings.Contains(log.String(), "removed the cached tether agent") {
				t.Errorf("the log does not say the altered agent was removed: %q", log)
			}
		})
	}
}

func TestCacheRefusesAgentItCannotRemake(t *testing.T) {
	root := t.TempDir()
	m := &fakeMaker{content: map[string]string{"amd64": "agent"}}
	s, _ := open(t, root, m)
	p := agentOK(t, s, "amd64", "agent")
	if err := os.WriteFile(p, []byte("evil"), 0o700); err != nil {
		t.Fatal(err)
	}
	m.content = nil // the toolchain is gone
	s2, _ := open(t, root, m)
	if p, _, err := s2.Agent("amd64"); err == nil {
		t.Fatalf("a tampered agent with no way to remake it was handed out: %s", p)
	}
	if _, err := os.Lstat(p); !os.IsNotExist(err) {
		t.Errorf("the tampered agent is still in the cache: %v", err)
	}
}

func TestCacheRemakeComparesWorkingTreeBuilds(t *testing.T) {
	root := t.TempDir()
	m := &fakeMaker{content: map[string]string{"amd64": "tree v1"}, remaking: true}
	s, _ := open(t, root, m)
	p1 := agentOK(t, s, "amd64", "tree v1")

	s2, log := open(t, root, m)
	if p := agentOK(t, s2, "amd64", "tree v1"); p != p1 {
		t.Errorf("an unchanged tree gave a new agent %s, want the cached %s", p, p1)
	}
	if log.Len() != 0 || m.firsts.Load() != 1 {
		t.Errorf("an unchanged tree was announced as a build: %q, first builds %d", log, m.firsts.Load())
	}

	m.content["amd64"] = "tree v2"
	s3, log := open(t, root, m)
	agentOK(t, s3, "amd64", "tree v2")
	if !strings.Contains(log.String(), "rebuilt the tether agent for linux/amd64") {
		t.Errorf("a changed tree's agent was not announced: %q", log)
	}
}

func TestCacheEmbeddedAgents(t *testing.T) {
	root := t.TempDir()
	e := embedded{fstest.MapFS{"tether-agent-linux-arm": {Data: []byte("embedded arm")}}}
	s, _ := open(t, root, e)
	p := agentOK(t, s, "arm", "embedded arm")
	if err := os.WriteFile(p, []byte("evil"), 0o700); err != nil {
		t.Fatal(err)
	}
	s2, _ := open(t, root, e)
	agentOK(t, s2, "arm", "embedded arm")
	if _, _, err := s2.Agent("amd64"); err == nil || !strings.Contains(err.Error(), "carries no agent for linux/amd64") {
		t.Errorf("missing embedded agent: err %v", err)
	}
}

// TestPrivateDir plants, at each level of the cache, what another user
// could use to swap the agents.
func TestPrivateDir(t *testing.T) {
	cases := map[string]struct {
		plant   func(t *testing.T, root string)
		wantErr string
	}{
		"fresh": {plant: func(*testing.T, string) {}},
		"symlink to another directory": {
			plant: func(t *testing.T, root string) {
				other := t.TempDir()
				os.Chmod(other, 0o700)
				if err := os.Symlink(other, filepath.Join(root, "tether")); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "symlink",
		},
		"open to others": {
			plant: func(t *testing.T, root string) {
				if err := os.MkdirAll(filepath.Join(root, "tether", "agents"), 0o700); err != nil {
					t.Fatal(err)
				}
				os.Chmod(filepath.Join(root, "tether", "agents"), 0o777)
			},
			wantErr: "mode is 0777",
		},
		"a file": {
			plant: func(t *testing.T, root string) {
				if err := os.WriteFile(filepath.Join(root, "tether"), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "not a directory",
		},
		"owned by another user": {
			plant: func(t *testing.T, root string) {
				if os.Geteuid() != 0 {
					t.Skip("needs root to give a directory away")
				}
				d := filepath.Join(root, "tether")
				if err := os.Mkdir(d, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(d, 65534, 65534); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "belongs to uid 65534",
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			c.plant(t, root)
			dir, err := privateDir(root, "tether", "agents", "k")
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatal(err)
			case c.wantErr != "" && err == nil:
				t.Fatalf("accepted %s", dir)
			case c.wantErr != "" && !strings.Contains(err.Error(), c.wantErr):
				t.Fatalf("error %q does not say %q", err, c.wantErr)
			}
		})
	}
}

func TestPrivateDirOwnedByAnotherUser(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("covered by TestPrivateDir as root")
	}
	// "/" belongs to root, not to this user.
	if err := checkPrivateDir("/"); err == nil || !strings.Contains(err.Error(), "belongs to uid 0") {
		t.Errorf("a directory of root's: %v", err)
	}
}

func TestUserCacheDir(t *testing.T) {
	cases := []struct {
		env  []string
		goos string
		want string
	}{
		{[]string{"HOME=/home/u"}, "linux", "/home/u/.cache"},
		{[]string{"HOME=/home/u", "XDG_CACHE_HOME=/c"}, "linux", "/c"},
		{[]string{"HOME=/home/u", "XDG_CACHE_HOME=rel"}, "linux", "/home/u/.cache"},
		{[]string{"HOME=/Users/u", "XDG_CACHE_HOME=/c"}, "darwin", "/Users/u/Library/Caches"},
	}
	for _, c := range cases {
		got, err := userCacheDir(envOf(c.env...), c.goos)
		if err != nil || got != c.want {
			t.Errorf("userCacheDir(%q, %s) = %q, %v; want %q", c.env, c.goos, got, err, c.want)
		}
	}
	if _, err := userCacheDir(envOf(), "linux"); err == nil {
		t.Error("no HOME, no XDG_CACHE_HOME: no error")
	}
}
