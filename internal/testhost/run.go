package testhost

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tetherdeploy/tether/internal/atomicfile"
)

// BaseDir holds one directory per run. It is not under /tmp: inside a host
// /tmp is private and would hide it.
const BaseDir = "/var/tmp/tether-testhost"

// namePrefix starts every netns and runner-side link a run creates.
const namePrefix = "tth-"

var runIDRe = regexp.MustCompile(`^[0-9a-f]{6}$`)

// owner is <run>/owner.json: who made the run and which address lease it
// holds. Liveness is not read from it: the owner holds an flock on <run>/lock
// for its whole life, and the kernel drops it when the owner dies, whatever
// way it dies and whatever pid comes next.
type owner struct {
	PID      int       `json:"pid"`
	Lease    int       `json:"lease"`
	Topology string    `json:"topology"`
	Created  time.Time `json:"created"`
}

// staleRun is a run whose owner is gone, to be removed by whoever found it;
// lock is held (nil when the run never got as far as its lock file).
type staleRun struct {
	id    string
	lease int // -1 when unknown
	lock  *os.File
}

func runDir(id string) string { return filepath.Join(BaseDir, id) }

func lockPath(id string) string { return filepath.Join(runDir(id), "lock") }

// lockGlobal serialises claiming runs and deciding which are dead.
func lockGlobal() (*os.File, error) {
	if err := os.MkdirAll(BaseDir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(BaseDir, ".lock"), os.O_CREATE|os.O_RDWR|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return f, nil
}

// tryLockRun takes a run's lock if its owner is gone. It returns (nil, false)
// when the owner is alive, (nil, true) when there is no lock file at all.
func tryLockRun(id string) (*os.File, bool, error) {
	f, err := os.OpenFile(lockPath(id), os.O_RDWR|syscall.O_CLOEXEC, 0)
	if os.IsNotExist(err) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return f, true, nil
}

func readOwner(id string) (owner, bool) {
	b, err := os.ReadFile(filepath.Join(runDir(id), "owner.json"))
	if err != nil {
		return owner{}, false
	}
	var o owner
	if json.Unmarshal(b, &o) != nil {
		return owner{}, false
	}
	return o, true
}

// runIDs lists the run directories.
func runIDs() ([]string, error) {
	ents, err := os.ReadDir(BaseDir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && runIDRe.MatchString(e.Name()) {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// ourLinks lists runner-side links of every run.
func ourLinks() ([]string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, i := range ifs {
		if strings.HasPrefix(i.Name, namePrefix) {
			out = append(out, i.Name)
		}
	}
	return out, nil
}

// ourRoute is a route of the runner's main table inside our ranges.
type ourRoute struct {
	dst         netip.Prefix
	unreachable bool
}

func (r ourRoute) lease() int { return int(r.dst.Addr().As4()[2]) }

func ourRoutes(ctx context.Context) ([]ourRoute, error) {
	out, err := run(ctx, "ip", "-4", "-o", "route", "show", "table", "main")
	if err != nil {
		return nil, err
	}
	var rs []ourRoute
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		r := ourRoute{}
		if f[0] == "unreachable" && len(f) > 1 {
			r.unreachable = true
			f = f[1:]
		}
		p, err := netip.ParsePrefix(f[0])
		if err != nil {
			if a, err2 := netip.ParseAddr(f[0]); err2 == nil {
				p = netip.PrefixFrom(a, 32)
			} else {
				continue
			}
		}
		if b := p.Addr().As4(); p.Addr().Is4() && b[0] == 10 && (b[1] == uplinkNet || b[1] == lanNet) {
			r.dst = p
			rs = append(rs, r)
		}
	}
	return rs, nil
}

func newRunID() (string, error) {
	for range 100 {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		id := hex.EncodeToString(b[:])
		if _, err := os.Lstat(runDir(id)); os.IsNotExist(err) {
			return id, nil
		}
	}
	return "", errors.New("no free run id")
}

// claimRun creates a new run directory with its lock held and an address
// lease no live or unremoved run holds, and returns what dead runs left
// behind so the caller can remove it (their locks are held for it).
func claimRun(ctx context.Context, topo string) (id string, lock *os.File, lease int, stale []staleRun, err error) {
	g, err := lockGlobal()
	if err != nil {
		return "", nil, 0, nil, err
	}
	defer g.Close()

	ids, err := runIDs()
	if err != nil {
		return "", nil, 0, nil, err
	}
	used := map[int]bool{}
	known := map[string]bool{}
	for _, rid := range ids {
		known[rid] = true
		o, ok := readOwner(rid)
		lease := -1
		if ok {
			used[o.Lease] = true
			lease = o.Lease
		}
		l, dead, err := tryLockRun(rid)
		if err != nil {
			continue
		}
		if dead {
			stale = append(stale, staleRun{id: rid, lease: lease, lock: l})
		}
	}
	// Names whose run directory is gone: a run that died while being removed.
	orphans := map[string]bool{}
	nets, _ := ourNetns()
	links, _ := ourLinks()
	for name := range nets {
		if r := runOfName(name); r != "" && !known[r] {
			orphans[r] = true
		}
	}
	for _, name := range links {
		if r := runOfName(name); r != "" && !known[r] {
			orphans[r] = true
		}
	}
	for r := range orphans {
		stale = append(stale, staleRun{id: r, lease: -1})
	}
	routes, err := ourRoutes(ctx)
	if err != nil {
		closeStale(stale)
		return "", nil, 0, nil, err
	}
	for _, r := range routes {
		if r.unreachable && !used[r.lease()] {
			// Left by a run whose directory is gone: nobody else will.
			_, _ = run(ctx, "ip", "route", "del", "unreachable", r.dst.String())
			continue
		}
		used[r.lease()] = true
	}
	lease = -1
	for n := 0; n < 256; n++ {
		if !used[n] {
			lease = n
			break
		}
	}
	if lease < 0 {
		closeStale(stale)
		return "", nil, 0, nil, errors.New("all 256 address leases are in use; run `testhost clean`")
	}
	if id, err = newRunID(); err != nil {
		closeStale(stale)
		return "", nil, 0, nil, err
	}
	fail := func(err error) (string, *os.File, int, []staleRun, error) {
		if lock != nil {
			lock.Close()
		}
		os.RemoveAll(runDir(id))
		closeStale(stale)
		return "", nil, 0, nil, err
	}
	if err := os.Mkdir(runDir(id), 0o755); err != nil {
		return fail(err)
	}
	lock, err = os.OpenFile(lockPath(id), os.O_CREATE|os.O_RDWR|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return fail(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fail(fmt.Errorf("lock new run: %w", err))
	}
	o, _ := json.MarshalIndent(owner{PID: os.Getpid(), Lease: lease, Topology: topo, Created: time.Now().UTC()}, "", "  ")
	if err := writeFileAtomic(filepath.Join(runDir(id), "owner.json"), o, 0o644); err != nil {
		return fail(err)
	}
	return id, lock, lease, stale, nil
}

func closeStale(stale []staleRun) {
	for _, s := range stale {
		if s.lock != nil {
			s.lock.Close()
		}
	}
}

// writeFileAtomic writes a file that readers see whole or not at all.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	return atomicfile.WriteFile(path, data, mode)
}

// killRun kills every process of a run until none is left: processes inside
// its namespaces fork (sshd sessions, detached agents), so one pass is not
// enough.
func killRun(ctx context.Context, id string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		procs, err := scanProcs()
		if err != nil {
			return err
		}
		var left []int
		for _, p := range procs {
			if p.belongsTo(id) {
				left = append(left, p.pid)
				_ = syscall.Kill(p.pid, syscall.SIGKILL)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("run %s: processes still alive after SIGKILL: %v", id, left)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// removeRun removes everything of run id: processes, runner-side links,
// namespaces, its unreachable route and its directory. It goes on past
// errors so that one stuck piece does not keep the others.
func removeRun(ctx context.Context, id string, lease int, logf func(string, ...any)) error {
	var errs []error
	if err := killRun(ctx, id); err != nil {
		errs = append(errs, err)
	}
	links, err := ourLinks()
	if err != nil {
		errs = append(errs, err)
	}
	for _, l := range links {
		if runOfName(l) == id {
			if _, err := run(ctx, "ip", "link", "del", l); err != nil && linkExists(l) {
				errs = append(errs, err)
			}
		}
	}
	nets, err := ourNetns()
	if err != nil {
		errs = append(errs, err)
	}
	for name := range nets {
		if runOfName(name) == id {
			if _, err := run(ctx, "ip", "netns", "del", name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if lease >= 0 {
		routes, err := ourRoutes(ctx)
		if err != nil {
			errs = append(errs, err)
		}
		for _, r := range routes {
			if r.unreachable && r.lease() == lease {
				if _, err := run(ctx, "ip", "route", "del", "unreachable", r.dst.String()); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	dir := runDir(id)
	if mps, err := rootMounts(dir); err != nil || len(mps) > 0 {
		errs = append(errs, fmt.Errorf("run %s: not removing %s: mounted here: %v %v", id, dir, mps, err))
	} else if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	if logf != nil {
		logf("testhost: removed run %s", id)
	}
	return errors.Join(errs...)
}

func linkExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

// Clean removes what runs whose owner is gone left behind (namespaces,
// links, routes, processes, directories). Live runs are not touched.
func Clean(ctx context.Context, logf func(string, ...any)) error {
	stale, err := findStale(ctx)
	if err != nil {
		return err
	}
	return removeStale(ctx, stale, logf)
}

func findStale(ctx context.Context) ([]staleRun, error) {
	g, err := lockGlobal()
	if err != nil {
		return nil, err
	}
	defer g.Close()
	ids, err := runIDs()
	if err != nil {
		return nil, err
	}
	var stale []staleRun
	known := map[string]bool{}
	leased := map[int]bool{}
	for _, id := range ids {
		known[id] = true
		lease := -1
		if o, ok := readOwner(id); ok {
			lease = o.Lease
			leased[lease] = true
		}
		l, dead, err := tryLockRun(id)
		if err == nil && dead {
			stale = append(stale, staleRun{id: id, lease: lease, lock: l})
		}
	}
	orphans := map[string]bool{}
	nets, _ := ourNetns()
	for name := range nets {
		if r := runOfName(name); r != "" && !known[r] {
			orphans[r] = true
		}
	}
	links, _ := ourLinks()
	for _, name := range links {
		if r := runOfName(name); r != "" && !known[r] {
			orphans[r] = true
		}
	}
	procs, _ := scanProcs()
	for _, p := range procs {
		for _, r := range p.runs {
			if !known[r] {
				orphans[r] = true
			}
		}
	}
	for r := range orphans {
		stale = append(stale, staleRun{id: r, lease: -1})
	}
	if routes, err := ourRoutes(ctx); err == nil {
		for _, r := range routes {
			if r.unreachable && !leased[r.lease()] {
				_, _ = run(ctx, "ip", "route", "del", "unreachable", r.dst.String())
			}
		}
	}
	return stale, nil
}

func removeStale(ctx context.Context, stale []staleRun, logf func(string, ...any)) error {
	var errs []error
	for _, s := range stale {
		if logf != nil {
			logf("testhost: removing leftovers of dead run %s", s.id)
		}
		errs = append(errs, removeRun(ctx, s.id, s.lease, nil))
		if s.lock != nil {
			s.lock.Close()
		}
	}
	return errors.Join(errs...)
}

// Leftover kinds.
const (
	KindNetns   = "netns"
	KindLink    = "link"
	KindRoute   = "route"
	KindProcess = "process"
	KindDir     = "dir"
)

// Leftover is one thing a run created that still exists.
type Leftover struct {
	Kind string `json:"kind"` // KindNetns, KindLink, ...
	Name string `json:"name"` // netns or link name, route, pid (with its mounts), directory
	Run  string `json:"run"`  // run id, "" when it cannot be told
	Live bool   `json:"live"` // the run's owner is still running
}

func (l Leftover) String() string {
	state := "dead"
	if l.Live {
		state = "live"
	}
	return fmt.Sprintf("%s %s (run %s, %s)", l.Kind, l.Name, l.Run, state)
}

// Leftovers lists everything of every run that exists now, live runs
// included (see Leftover.Live). A test checks its own fleet with
// Fleet.Leftovers.
func Leftovers(ctx context.Context) ([]Leftover, error) {
	return leftovers(ctx, "", -1)
}

// leftovers lists what belongs to run only (all runs when only == ""), plus
// routes of lease (any when lease < 0 and only == "").
func leftovers(ctx context.Context, only string, lease int) ([]Leftover, error) {
	liveCache := map[string]bool{}
	live := func(id string) bool {
		if id == "" {
			return false
		}
		if v, ok := liveCache[id]; ok {
			return v
		}
		l, dead, err := tryLockRun(id)
		if l != nil {
			l.Close()
		}
		v := err == nil && !dead
		liveCache[id] = v
		return v
	}
	want := func(id string) bool { return only == "" || id == only }
	var out []Leftover
	add := func(kind, name, id string) {
		if want(id) {
			out = append(out, Leftover{Kind: kind, Name: name, Run: id, Live: live(id)})
		}
	}
	var errs []error
	nets, err := ourNetns()
	errs = append(errs, err)
	for name := range nets {
		add(KindNetns, name, runOfName(name))
	}
	links, err := ourLinks()
	errs = append(errs, err)
	for _, name := range links {
		add(KindLink, name, runOfName(name))
	}
	procs, err := scanProcs()
	errs = append(errs, err)
	for _, p := range procs {
		name := strconv.Itoa(p.pid) + " " + procName(p.pid)
		switch {
		case p.netns != "":
			add(KindProcess, name+" in "+p.netns, runOfName(p.netns))
		default:
			for _, r := range p.runs {
				add(KindProcess, name+" with mounts of run "+r, r)
			}
		}
	}
	ids, err := runIDs()
	errs = append(errs, err)
	leaseRun := map[int]string{}
	for _, id := range ids {
		add(KindDir, runDir(id), id)
		if o, ok := readOwner(id); ok {
			leaseRun[o.Lease] = id
		}
	}
	routes, err := ourRoutes(ctx)
	errs = append(errs, err)
	for _, r := range routes {
		if !r.unreachable {
			continue // connected routes go with their link
		}
		id := leaseRun[r.lease()]
		if (only == "" && lease < 0) || r.lease() == lease {
			out = append(out, Leftover{Kind: KindRoute, Name: "unreachable " + r.dst.String(), Run: id, Live: live(id)})
		}
	}
	slices.SortFunc(out, func(a, b Leftover) int {
		return strings.Compare(a.Kind+a.Name, b.Kind+b.Name)
	})
	return out, errors.Join(errs...)
}

func procName(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}
