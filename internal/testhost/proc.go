package testhost

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// netnsDir is where `ip netns` keeps the namespaces it names.
const netnsDir = "/run/netns"

// ourNetns lists the named network namespaces of every run: name → inode.
func ourNetns() (map[string]uint64, error) {
	ents, err := os.ReadDir(netnsDir)
	if os.IsNotExist(err) {
		return map[string]uint64{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), namePrefix) {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(netnsDir, e.Name()), &st); err != nil {
			continue
		}
		out[e.Name()] = st.Ino
	}
	return out, nil
}

// runOfName gives the run id in a netns or link name "tth-<run>-<x>".
func runOfName(name string) string {
	rest, ok := strings.CutPrefix(name, namePrefix)
	if !ok {
		return ""
	}
	id, _, ok := strings.Cut(rest, "-")
	if !ok || !runIDRe.MatchString(id) {
		return ""
	}
	return id
}

// proc is a process that belongs to some run: it sits in one of our network
// namespaces or has one of our directories mounted.
type proc struct {
	pid   int
	netns string   // our netns it is in, if any
	runs  []string // runs whose directories its mount namespace has mounted
}

var mountRunRe = regexp.MustCompile(`tether-testhost/([0-9a-f]{6})/`)

func nsInode(pid int, kind string) (uint64, bool) {
	l, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/" + kind)
	if err != nil {
		return 0, false
	}
	i, j := strings.IndexByte(l, '['), strings.IndexByte(l, ']')
	if i < 0 || j < i {
		return 0, false
	}
	n, err := strconv.ParseUint(l[i+1:j], 10, 64)
	return n, err == nil
}

// mountRuns reads a process's mount table for bind mounts of run directories.
func mountRuns(pid int) []string {
	mounts, _ := readMountinfo("/proc/" + strconv.Itoa(pid) + "/mountinfo")
	seen := map[string]bool{}
	var runs []string
	for _, m := range mounts {
		if r := mountRunRe.FindStringSubmatch(m.root + "/"); r != nil && !seen[r[1]] {
			seen[r[1]] = true
			runs = append(runs, r[1])
		}
	}
	return runs
}

// mount is one line of a mountinfo table: a bind mount's root is the
// directory it came from, its point where it shows.
type mount struct{ root, point string }

func readMountinfo(file string) ([]mount, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// fields: id parent major:minor root mountpoint ...
		fields := strings.Fields(sc.Text())
		if len(fields) >= 5 {
			out = append(out, mount{root: fields[3], point: fields[4]})
		}
	}
	return out, sc.Err()
}

// scanProcs finds every process that belongs to a run, live or dead.
func scanProcs() ([]proc, error) {
	nets, err := ourNetns()
	if err != nil {
		return nil, err
	}
	byIno := map[uint64]string{}
	for name, ino := range nets {
		byIno[ino] = name
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	rootMnt, _ := nsInode(self, "mnt")
	mntCache := map[uint64][]string{}
	var out []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		p := proc{pid: pid}
		if ino, ok := nsInode(pid, "net"); ok {
			p.netns = byIno[ino]
		}
		if mnt, ok := nsInode(pid, "mnt"); ok && mnt != rootMnt {
			runs, ok := mntCache[mnt]
			if !ok {
				runs = mountRuns(pid)
				mntCache[mnt] = runs
			}
			p.runs = runs
		}
		if p.netns != "" || len(p.runs) > 0 {
			out = append(out, p)
		}
	}
	return out, nil
}

// belongsTo says whether the process is part of run id.
func (p proc) belongsTo(id string) bool {
	if p.netns != "" && runOfName(p.netns) == id {
		return true
	}
	for _, r := range p.runs {
		if r == id {
			return true
		}
	}
	return false
}

// rootMounts lists mount points in our own mount namespace under dir: there
// must be none before a run directory is removed (removing files through a
// bind mount would delete what it shows).
func rootMounts(dir string) ([]string, error) {
	mounts, err := readMountinfo("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range mounts {
		if m.point == dir || strings.HasPrefix(m.point, dir+"/") {
			out = append(out, m.point)
		}
	}
	return out, nil
}
