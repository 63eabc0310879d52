//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// section is what one scenario measured.
type section struct {
	name, title string
	// setup says what was measured and how, in a sentence or two.
	setup  string
	tables []*table
	// goals are one-line verdicts ("16 hosts ≤ 2× one host: 1.4× — met").
	goals []string
	notes []string
	when  time.Time
	took  time.Duration
}

func (s *section) print(w io.Writer) {
	s.body(w, func(i int, t *table) {
		if i > 0 {
			fmt.Fprintln(w)
		}
		t.text(w)
	}, "  goal: %s\n", "  note: %s\n")
	fmt.Fprintf(w, "  (scenario took %s)\n", s.took.Round(time.Second))
}

// body writes the section's tables (the i-th with table), then its goals
// and notes, each formatted with goalf and notef: the same parts in the
// same order in the terminal and in RESULTS.md.
func (s *section) body(w io.Writer, table func(i int, t *table), goalf, notef string) {
	for i, t := range s.tables {
		table(i, t)
	}
	for _, g := range s.goals {
		fmt.Fprintf(w, goalf, g)
	}
	for _, n := range s.notes {
		fmt.Fprintf(w, notef, n)
	}
}

func (s *section) markdown(w io.Writer, command, machine string, quick bool) {
	fmt.Fprintf(w, "## %s\n\n", s.title)
	mode := ""
	if quick {
		mode = " (quick mode: fewer runs, smaller sizes)"
	}
	fmt.Fprintf(w, "Measured %s in %s%s with `%s`  \nMachine: %s\n\n",
		s.when.UTC().Format("2006-01-02 15:04 UTC"), s.took.Round(time.Second), mode, command, machine)
	if s.setup != "" {
		fmt.Fprintf(w, "%s\n\n", s.setup)
	}
	s.body(w, func(_ int, t *table) {
		t.markdown(w)
		fmt.Fprintln(w)
	}, "**Goal:** %s\n\n", "- %s\n")
	if len(s.notes) > 0 {
		fmt.Fprintln(w)
	}
}

const resultsHeader = `# tether benchmarks

Measured by ` + "`bench/run.sh`" + ` (the Go program in bench/) on sandbox hosts: network
namespaces with their own Nix store and sshd, real nix, real sshd, real
closures built from the fixture flake. Each section says when, on what and
with which command its figures were taken; running one scenario replaces
only its section. The machine is shared, so timings carry noise from
whatever else ran at the time.

`

// markers delimit one scenario's section in RESULTS.md.
func markers(name string) (begin, end string) {
	return "<!-- bench:" + name + " -->", "<!-- /bench:" + name + " -->"
}

// writeResults replaces the sections of the scenarios just run in file and
// keeps the others, in scenario order.
func writeResults(file string, done []*section, command, machine string, quick bool) error {
	old, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", file, err)
	}
	kept := parseSections(old)
	for _, s := range done {
		var b bytes.Buffer
		s.markdown(&b, command, machine, quick)
		kept[s.name] = b.String()
	}
	var out bytes.Buffer
	out.WriteString(resultsHeader)
	for _, sc := range scenarios {
		body, ok := kept[sc.name]
		if !ok {
			continue
		}
		begin, end := markers(sc.name)
		fmt.Fprintf(&out, "%s\n%s%s\n\n", begin, body, end)
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, append(bytes.TrimRight(out.Bytes(), "\n"), '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

// parseSections reads the sections of an existing RESULTS.md by scenario.
func parseSections(data []byte) map[string]string {
	out := map[string]string{}
	text := string(data)
	for _, sc := range scenarios {
		begin, end := markers(sc.name)
		i := strings.Index(text, begin+"\n")
		if i < 0 {
			continue
		}
		rest := text[i+len(begin)+1:]
		j := strings.Index(rest, end)
		if j < 0 {
			continue
		}
		out[sc.name] = rest[:j]
	}
	return out
}

// describeMachine says what the figures were measured on.
func describeMachine(ctx context.Context, root string) string {
	parts := []string{fmt.Sprintf("%d CPUs (nproc)", runtime.NumCPU())}
	if m := cpuModel(); m != "" {
		parts[0] += " " + m
	}
	if kb := memTotalKiB(); kb > 0 {
		parts = append(parts, fmt.Sprintf("%s RAM", bytesIEC(kb*1024)))
	}
	if out, err := exec.CommandContext(ctx, "uname", "-r").Output(); err == nil {
		parts = append(parts, "Linux "+strings.TrimSpace(string(out)))
	}
	if out, err := exec.CommandContext(ctx, "nix", "--version").Output(); err == nil {
		parts = append(parts, strings.TrimSpace(string(out)))
	}
	if out, err := exec.CommandContext(ctx, "ssh", "-V").CombinedOutput(); err == nil {
		parts = append(parts, strings.Fields(string(out))[0])
	}
	parts = append(parts, runtime.Version())
	cmd := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty")
	cmd.Dir = root
	if out, err := cmd.Output(); err == nil {
		parts = append(parts, "tether "+strings.TrimSpace(string(out)))
	}
	return strings.Join(parts, ", ")
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return "(" + strings.TrimSpace(v) + ")"
		}
	}
	return ""
}

// memTotalKiB reads MemTotal from /proc/meminfo.
func memTotalKiB() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	return statusField(b, "MemTotal")
}

// freeBytes is the space available to root on the filesystem holding dir.
func freeBytes(dir string) (int64, error) {
	for {
		if _, err := os.Stat(dir); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * st.Bsize, nil
}
