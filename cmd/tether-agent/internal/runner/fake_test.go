package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/pkg/agent"
)

// fakeClock drives deadlines by hand. Waits up to realBelow (poll
// intervals, lock retries) pass in real time, so loops keep turning; longer
// ones (timeouts) only fire on Advance.
type fakeClock struct {
	mu        sync.Mutex
	now       time.Time
	waiters   []fakeWaiter
	realBelow time.Duration
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), realBelow: time.Second}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	if d <= c.realBelow {
		return time.After(d)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), ch: ch})
	return ch
}

// Advance moves time on and fires every wait that is due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			keep = append(keep, w)
			continue
		}
		w.ch <- c.now
	}
	c.waiters = keep
}

// fakeSystem is how one fake system's activation behaves.
type fakeSystem struct {
	code     int      // exit status of switch, test and dry-activate
	bootCode int      // exit status of boot
	hang     bool     // run until killed (after moving the clock past the activation timeout)
	output   []string // lines on stderr
}

// fakeMachine is an Executor that plays nix-env (on real symlinks, with
// nix-env's rules) and the systems' activations. Any other command fails
// the test.
type fakeMachine struct {
	t       *testing.T
	clock   *fakeClock
	root    string
	systems map[string]fakeSystem // by store path

	mu          sync.Mutex
	bootDefault string   // base name of the system that boots next (switch, boot)
	activations []string // "<system base name> <action>"
	activEnv    [][]string
	nixCalls    []string
	systemdRun  func(argv []string) (int, error)
	// profile is the system profile whose generations a boot activation
	// writes boot entries for (under root/boot/loader, when that exists).
	profile string
	// toolCalls records bootctl and systemctl; onReboot runs at
	// `systemctl reboot` (the machine going down), rebootCode is its exit.
	toolCalls  []string
	onReboot   func()
	rebootCode int
}

func (m *fakeMachine) Run(ctx context.Context, c Command) (int, error) {
	switch {
	case c.Argv[0] == "nix-env":
		return m.nixEnv(c)
	case c.Argv[0] == "systemd-run" && m.systemdRun != nil:
		return m.systemdRun(c.Argv)
	case filepath.Base(c.Argv[0]) == "bootctl" || filepath.Base(c.Argv[0]) == "systemctl":
		m.mu.Lock()
		m.toolCalls = append(m.toolCalls, filepath.Base(c.Argv[0])+" "+strings.Join(c.Argv[1:], " "))
		m.mu.Unlock()
		if filepath.Base(c.Argv[0]) == "systemctl" {
			if m.onReboot != nil && m.rebootCode == 0 {
				m.onReboot()
			}
			return m.rebootCode, nil
		}
		return 0, nil
	}
	system, action := m.whichActivation(c)
	if system == "" {
		m.t.Errorf("fake machine: unexpected command %q", c.Argv)
		return 127, nil
	}
	sys, ok := m.systems[system]
	if !ok {
		m.t.Errorf("fake machine: activation of unknown system %s", system)
		return 127, nil
	}
	m.mu.Lock()
	m.activations = append(m.activations, filepath.Base(system)+" "+action)
	m.activEnv = append(m.activEnv, c.Env)
	m.mu.Unlock()
	for _, l := range sys.output {
		fmt.Fprintln(c.Stderr, l)
	}
	if sys.hang {
		m.clock.Advance(agent.DefaultActivationTimeout)
		<-ctx.Done()
		return -1, context.Cause(ctx)
	}
	code := sys.code
	if action == "boot" {
		code = sys.bootCode
	}
	if code == 0 && (action == "switch" || action == "boot") {
		m.mu.Lock()
		m.bootDefault = filepath.Base(system)
		m.mu.Unlock()
		m.writeBootEntries()
	}
	if code == 0 && (action == "switch" || action == "test") {
		link := filepath.Join(m.root, "run/current-system")
		_ = os.MkdirAll(filepath.Dir(link), 0o755)
		_ = os.Remove(link)
		if err := os.Symlink(system, link); err != nil {
			m.t.Errorf("fake machine: %v", err)
		}
	}
	return code, nil
}

// whichActivation tells which system an activation command is for, and
// the action.
func (m *fakeMachine) whichActivation(c Command) (string, string) {
	a0 := c.Argv[0]
	switch {
	case strings.HasSuffix(a0, "/bin/switch-to-configuration") && len(c.Argv) == 2:
		return filepath.Dir(filepath.Dir(a0)), c.Argv[1]
	case filepath.Base(a0) == WrapperName:
		loc := filepath.Dir(a0)
		if st, err := readProfile(loc); err == nil && st.Path != "" {
			loc = st.Path
		}
		action := "switch"
		switch {
		case envValue(c.Env, "DRY_ACTIVATE") == "1":
			action = "dry-activate"
		case envValue(c.Env, "BOOT") == "1":
			action = "boot"
		}
		return loc, action
	}
	return "", ""
}

func (m *fakeMachine) nixEnv(c Command) (int, error) {
	m.mu.Lock()
	m.nixCalls = append(m.nixCalls, strings.Join(c.Argv[1:], " "))
	m.mu.Unlock()
	a := c.Argv
	if len(a) != 5 || a[1] != "-p" {
		m.t.Errorf("fake nix-env: unexpected %q", a)
		return 1, nil
	}
	profile, op, arg := a[2], a[3], a[4]
	gens, err := listGenerations(profile)
	if err != nil {
		fmt.Fprintln(c.Stderr, err)
		return 1, nil
	}
	cur, _ := readProfile(profile)
	point := func(n int) {
		tmp := profile + ".tmp"
		_ = os.Remove(tmp)
		if err := os.Symlink(filepath.Base(generationLink(profile, n)), tmp); err != nil {
			m.t.Error(err)
		}
		if err := os.Rename(tmp, profile); err != nil {
			m.t.Error(err)
		}
	}
	switch op {
	case "--set":
		// Like nix: reuse the last generation when it holds the path.
		if n := len(gens); n > 0 && gens[n-1].Path == arg {
			point(gens[n-1].Number)
			return 0, nil
		}
		next := 1
		if n := len(gens); n > 0 {
			next = gens[n-1].Number + 1
		}
		if err := os.Symlink(arg, generationLink(profile, next)); err != nil {
			m.t.Error(err)
		}
		point(next)
		return 0, nil
	case "--switch-generation":
		n, _ := strconv.Atoi(arg)
		if _, err := os.Lstat(generationLink(profile, n)); err != nil {
			fmt.Fprintf(c.Stderr, "error: generation %d does not exist\n", n)
			return 1, nil
		}
		point(n)
		return 0, nil
	case "--delete-generations":
		n, _ := strconv.Atoi(arg)
		if n == cur.Generation {
			fmt.Fprintf(c.Stderr, "error: cannot delete current version of profile %s'\n", profile)
			return 1, nil
		}
		_ = os.Remove(generationLink(profile, n))
		return 0, nil
	}
	m.t.Errorf("fake nix-env: unexpected %q", a)
	return 1, nil
}

// writeBootEntries does what NixOS's systemd-boot installer does with the
// entries: one per generation of the system profile, the others removed.
func (m *fakeMachine) writeBootEntries() {
	dir := filepath.Join(m.root, "boot/loader/entries")
	if _, err := os.Stat(filepath.Dir(dir)); err != nil || m.profile == "" {
		return
	}
	_ = os.RemoveAll(dir)
	_ = os.MkdirAll(dir, 0o755)
	gens, _ := listGenerations(m.profile)
	for _, g := range gens {
		_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("nixos-generation-%d.conf", g.Number)), []byte("options init="+g.Path+"/init\n"), 0o644)
	}
}

func (m *fakeMachine) activated() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.activations...)
}

// harness is a Runner on a fake machine in a temp dir: state dir, profile
// dir, /run, and a fake store of systems.
type harness struct {
	t       *testing.T
	r       *Runner
	m       *fakeMachine
	clock   *fakeClock
	root    string
	profile string
	store   string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	base := t.TempDir()
	h := &harness{t: t, clock: newFakeClock(), root: filepath.Join(base, "root"),
		profile: filepath.Join(base, "profiles", "system"), store: filepath.Join(base, "store")}
	for _, d := range []string{h.root, filepath.Dir(h.profile), h.store} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h.m = &fakeMachine{t: t, clock: h.clock, root: h.root, systems: map[string]fakeSystem{}, profile: h.profile}
	h.r = &Runner{
		StateDir:     filepath.Join(base, "state"),
		Exec:         h.m,
		Clock:        h.clock,
		Root:         h.root,
		HasSystemd:   func() bool { return false },
		Executable:   "/fake/tether-agent",
		Env:          []string{"PATH=/fake/bin"},
		Diag:         testWriter{t},
		PollInterval: 2 * time.Millisecond,
		LockRetry:    20 * time.Millisecond,
		GoneGrace:    10 * time.Millisecond,
		RebootPause:  time.Millisecond,
		trustedAbove: base,
	}
	return h
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("diag: %s", strings.TrimSpace(string(p)))
	return len(p), nil
}

// system makes a fake system with bin/switch-to-configuration (and, with
// wrapper, only a deploy-rs-activate) and returns its path.
func (h *harness) system(name string, behave fakeSystem, wrapper bool) string {
	h.t.Helper()
	p := filepath.Join(h.store, name)
	exe := filepath.Join(p, "bin", "switch-to-configuration")
	if wrapper {
		exe = filepath.Join(p, WrapperName)
	}
	if err := os.MkdirAll(filepath.Dir(exe), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(exe, []byte("#!/bin/sh\nexit 99\n"), 0o755); err != nil {
		h.t.Fatal(err)
	}
	h.m.systems[p] = behave
	return p
}

// oldAndNew puts the systems of a deploy of "new" over "old" in the
// store, new behaving as behave (a wrapper-only profile when wrapper), and
// installs old as generation 1.
func (h *harness) oldAndNew(behave fakeSystem, wrapper bool) (old, newSys string) {
	h.t.Helper()
	old = h.system("old", fakeSystem{}, false)
	h.installed(old)
	return old, h.system("new", behave, wrapper)
}

// installed makes path the profile's current generation, as a deploy long
// ago would have.
func (h *harness) installed(path string) {
	h.t.Helper()
	code, _ := h.m.nixEnv(Command{Argv: []string{"nix-env", "-p", h.profile, "--set", path}, Stderr: testWriter{h.t}})
	if code != 0 {
		h.t.Fatal("fake nix-env --set failed")
	}
}

// booted makes path the system the machine booted (/run/booted-system).
func (h *harness) booted(path string) {
	h.t.Helper()
	link := filepath.Join(h.root, "run/booted-system")
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		h.t.Fatal(err)
	}
	_ = os.Remove(link)
	if err := os.Symlink(path, link); err != nil {
		h.t.Fatal(err)
	}
}

// bootLinks gives system the links NixOS systems have to what takes
// effect only at boot: kernel, initrd and kernel-modules of kernel, and
// systemd.
func (h *harness) bootLinks(system, kernel, systemd string) {
	h.t.Helper()
	p := filepath.Join(h.store, system)
	for name, target := range map[string]string{
		"kernel": kernel + "/bzImage", "initrd": "initrd-" + kernel + "/initrd",
		"kernel-modules": "modules-" + kernel + "/lib", "systemd": systemd + "/bin",
	} {
		target = filepath.Join(h.store, target)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			h.t.Fatal(err)
		}
		if err := os.WriteFile(target, nil, 0o644); err != nil {
			h.t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(p, name)); err != nil {
			h.t.Fatal(err)
		}
	}
}

func (h *harness) running(path string) {
	h.t.Helper()
	link := filepath.Join(h.root, "run/current-system")
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Symlink(path, link); err != nil {
		h.t.Fatal(err)
	}
}

const testToken = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

func (h *harness) request(id, closure string) agent.Request {
	return agent.Request{DeployID: id, Who: "ci@runner run 7", ProfilePath: h.profile, Closure: closure,
		Action: agent.ActionSwitch, MagicRollback: true, AutoRollback: true, Token: testToken}
}

// prepare lays out D as `start` does, without launching anything.
func (h *harness) prepare(req agent.Request) string {
	h.t.Helper()
	if err := ensureStateDir(h.r.StateDir, nil); err != nil {
		h.t.Fatal(err)
	}
	dir := h.r.DeployDir(req.DeployID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		h.t.Fatal(err)
	}
	if err := writeJSONAtomic(filepath.Join(dir, requestFile), req); err != nil {
		h.t.Fatal(err)
	}
	if err := writeFileAtomic(filepath.Join(dir, eventsFile), nil, 0o600); err != nil {
		h.t.Fatal(err)
	}
	return dir
}

func readEvents(t *testing.T, dir string) []agent.Event {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, eventsFile))
	if err != nil {
		t.Fatal(err)
	}
	var evs []agent.Event
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line == "" {
			continue
		}
		if !strings.HasSuffix(line, "\n") {
			t.Fatalf("event log ends in a partial line %q", line)
		}
		e, err := agent.ParseEvent([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	return evs
}

func findEvent(evs []agent.Event, typ agent.EventType) (agent.Event, bool) {
	for _, e := range evs {
		if e.Type == typ {
			return e, true
		}
	}
	return agent.Event{}, false
}

// generations lists the profile's generation numbers and which is current.
func (h *harness) generations() (nums []int, current string) {
	h.t.Helper()
	gens, err := listGenerations(h.profile)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, g := range gens {
		nums = append(nums, g.Number)
	}
	sort.Ints(nums)
	st, err := readProfile(h.profile)
	if err != nil {
		h.t.Fatal(err)
	}
	if st.Path == "" {
		return nums, ""
	}
	return nums, filepath.Base(st.Path)
}

// checkNoSecretsLeft asserts what must hold after every deploy: nothing
// left on disk could confirm a later one, and the lock is free.
func (h *harness) checkNoSecretsLeft(dir string) {
	h.t.Helper()
	for _, name := range []string{confirmFile, confirmFile + ".claimed"} {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			h.t.Errorf("%s left behind", name)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, requestFile))
	if err != nil {
		h.t.Fatal(err)
	}
	if strings.Contains(string(b), testToken) || regexp.MustCompile(`"token"`).Match(b) {
		h.t.Errorf("token still in request.json: %s", b)
	}
	if holder, err := probeLock(h.r.StateDir); err != nil || holder != nil {
		h.t.Errorf("lock still held after the deploy: %+v %v", holder, err)
	}
	if _, err := os.Lstat(filepath.Join(h.r.StateDir, lockInfoFile)); err == nil {
		h.t.Errorf("lock.json left behind")
	}
}

func (h *harness) last() agent.Result {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.r.StateDir, lastFile))
	if err != nil {
		h.t.Fatal(err)
	}
	var res agent.Result
	if err := json.Unmarshal(b, &res); err != nil {
		h.t.Fatal(err)
	}
	return res
}

// checkMachine asserts what a deploy left on the machine: the activations
// that ran, the profile's generations and system, and the boot default.
func (h *harness) checkMachine(t *testing.T, activations []string, gens []int, current, bootDefault string) {
	t.Helper()
	if got := h.m.activated(); !reflect.DeepEqual(got, activations) {
		t.Errorf("activations = %q, want %q", got, activations)
	}
	g, cur := h.generations()
	if !reflect.DeepEqual(g, gens) || cur != current {
		t.Errorf("profile: generations %v current %q, want %v %q", g, cur, gens, current)
	}
	if h.m.bootDefault != bootDefault {
		t.Errorf("boot default = %q, want %q", h.m.bootDefault, bootDefault)
	}
}
