//go:build linux

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tetherdeploy/tether/internal/testhost"
)

// statusField reads a "Name:   123 kB" line of /proc/<pid>/status or
// /proc/meminfo, in KiB; 0 when absent.
func statusField(status []byte, name string) int64 {
	for _, line := range bytes.Split(status, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok || string(k) != name {
			continue
		}
		f := strings.Fields(string(v))
		if len(f) == 0 {
			return 0
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		return n
	}
	return 0
}

// hwm is a process's peak resident set (VmHWM) in KiB; 0 when it is gone.
func hwm(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	return statusField(b, "VmHWM")
}

// cmdline is a process's argv; nil when it is gone.
func cmdline(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// ppids maps every pid to its parent.
func ppids() map[int]int {
	out := map[int]int{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		if pp, err := strconv.Atoi(f[1]); err == nil {
			out[pid] = pp
		}
	}
	return out
}

// peak is the largest VmHWM seen and whose it was.
type peak struct {
	KiB  int64
	What string
}

func (p *peak) see(kib int64, what string) {
	if kib > p.KiB {
		p.KiB, p.What = kib, what
	}
}

func (p peak) String() string {
	if p.KiB == 0 {
		return "—"
	}
	return bytesIEC(p.KiB * 1024)
}

// memPeaks is what a sampler saw.
type memPeaks struct {
	Self     peak // the deployer process itself
	Children peak // the processes it started (nix, ssh helpers)
	Agent    peak // tether-agent processes on the watched host
	Import   peak // nix-store --import on the watched host
}

// sampler polls peak resident sets while a deploy runs: the deployer and
// its descendants on the runner, and the agent and the store import on one
// sandbox host. The hosts share the runner's PID namespace, so /proc shows
// their processes too. VmHWM is each process's own high-water mark, so a
// poll every interval misses only growth in a process's last moments.
type sampler struct {
	pid  int
	host *testhost.Host

	mu    sync.Mutex
	peaks memPeaks
	stop  chan struct{}
	done  chan struct{}
}

const sampleEvery = 50 * time.Millisecond

func startSampler(pid int, host *testhost.Host) *sampler {
	s := &sampler{pid: pid, host: host, stop: make(chan struct{}), done: make(chan struct{})}
	go s.loop()
	return s
}

func (s *sampler) loop() {
	defer close(s.done)
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		s.sample()
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

func (s *sampler) sample() {
	var p memPeaks
	p.Self.see(hwm(s.pid), "tether")
	parents := ppids()
	for pid := range parents {
		if pid != s.pid && descends(parents, pid, s.pid) {
			p.Children.see(hwm(pid), procLabel(cmdline(pid)))
		}
	}
	if s.host != nil {
		pids, _ := s.host.Pids()
		for _, pid := range pids {
			argv := cmdline(pid)
			switch {
			case len(argv) > 0 && strings.Contains(argv[0], "/tether/agent-"):
				p.Agent.see(hwm(pid), procLabel(argv))
			case slices.Contains(argv, "--import") && len(argv) > 0 && strings.HasSuffix(argv[0], "nix-store"):
				p.Import.see(hwm(pid), "nix-store --import")
			}
		}
	}
	s.mu.Lock()
	s.peaks.Self.see(p.Self.KiB, p.Self.What)
	s.peaks.Children.see(p.Children.KiB, p.Children.What)
	s.peaks.Agent.see(p.Agent.KiB, p.Agent.What)
	s.peaks.Import.see(p.Import.KiB, p.Import.What)
	s.mu.Unlock()
}

// finish stops polling and returns the peaks.
func (s *sampler) finish() memPeaks {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peaks
}

func descends(parents map[int]int, pid, ancestor int) bool {
	for i := 0; i < 64 && pid > 1; i++ {
		pid = parents[pid]
		if pid == ancestor {
			return true
		}
	}
	return false
}

// procLabel names a process for the tables: the program and its first
// argument ("nix-store --export", "agent-… run").
func procLabel(argv []string) string {
	if len(argv) == 0 {
		return "?"
	}
	name := filepath.Base(argv[0])
	if strings.HasPrefix(name, "agent-") {
		name = "tether-agent"
	}
	if len(argv) > 1 {
		name += " " + argv[1]
	}
	return name
}

// cpuBusy is the CPU time the whole machine spent not idle since boot,
// from /proc/stat (user, nice, system, irq, softirq, steal).
func cpuBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		n, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100
