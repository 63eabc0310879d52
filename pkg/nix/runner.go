// Package nix is the one place that runs the nix command line: evaluation,
// builds, store queries, export and import. Everything goes through an
// Executor, so the same queries run on this machine or, through an SSH
// adapter, on a target or build host.
//
// Where the new command line differs between versions (`drv^out` against
// `drv!out`, the shape of `path-info --json`), the old and stable
// nix-store commands are used instead; they behave the same from Nix 2.8
// through current Nix and Lix.
package nix

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Runner runs nix commands through an Executor. The zero value runs them
// locally with this process's environment. A Runner is safe for
// concurrent use.
type Runner struct {
	// Exec runs the commands; Local{} when nil.
	Exec Executor
	// Store, when set, is passed as --store to every command: another
	// store than the default, such as "local?root=/some/dir".
	Store string
	// Log receives the commands' stderr as it comes (build logs, progress,
	// warnings). Nil drops it; the last lines are kept in errors anyway.
	Log io.Writer

	mu      sync.Mutex
	version *Version
}

// newCLIFlags turn on what the new command line needs whatever the
// configuration says, so a stock install works.
var newCLIFlags = []string{"--extra-experimental-features", "nix-command flakes"}

// nixArgv builds argv for the new command line: nix <subcommand...> flags args.
func (r *Runner) nixArgv(sub []string, args ...string) []string {
	argv := append([]string{"nix"}, sub...)
	argv = append(argv, newCLIFlags...)
	if r != nil && r.Store != "" {
		argv = append(argv, "--store", r.Store)
	}
	return append(argv, args...)
}

// storeArgv builds argv for nix-store: nix-store [--store S] args.
func (r *Runner) storeArgv(args ...string) []string {
	argv := []string{"nix-store"}
	if r != nil && r.Store != "" {
		argv = append(argv, "--store", r.Store)
	}
	return append(argv, args...)
}

// run runs argv, streaming stderr to Log; failures become *CmdError.
func (r *Runner) run(ctx context.Context, argv []string, stdin io.Reader, stdout io.Writer) error {
	exe := r.Exec
	if exe == nil {
		exe = Local{}
	}
	if stdout == nil {
		stdout = io.Discard
	}
	tail := &tailWriter{}
	var stderr io.Writer = tail
	if r.Log != nil {
		stderr = io.MultiWriter(tail, r.Log)
	}
	err := exe.Run(ctx, argv, stdin, stdout, stderr)
	if err == nil {
		return nil
	}
	ce := &CmdError{Argv: argv, ExitCode: exitCode(err), StderrTail: tail.String(), Err: err}
	if ctx.Err() != nil {
		ce.ExitCode = -1
		ce.Err = ctx.Err()
	}
	return ce
}

// output runs argv and returns its stdout.
func (r *Runner) output(ctx context.Context, argv []string) ([]byte, error) {
	var out bytes.Buffer
	if err := r.run(ctx, argv, nil, &out); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// Version is the version of the nix in use.
type Version struct {
	// Impl is the implementation named in `nix --version`: "Nix", "Lix,
	// like Nix", "Determinate Nix 3.1.0", ...
	Impl                string
	Major, Minor, Patch int
	// Suffix is what follows the numbers, such as "pre20241016_abcdef".
	Suffix string
	// Raw is the first line of `nix --version`.
	Raw string
}

// Lix reports whether this is Lix, whose version numbers (2.90 and up)
// are not Nix's.
func (v Version) Lix() bool { return strings.HasPrefix(v.Impl, "Lix") }

// AtLeast reports whether the version number is major.minor or later.
func (v Version) AtLeast(major, minor int) bool {
	return v.Major > major || (v.Major == major && v.Minor >= minor)
}

func (v Version) String() string {
	return fmt.Sprintf("%s %d.%d.%d%s", v.Impl, v.Major, v.Minor, v.Patch, v.Suffix)
}

var versionRE = regexp.MustCompile(`^nix \(([^)]*)\) (\d+)\.(\d+)(?:\.(\d+))?(\S*)`)

// ParseVersion reads the output of `nix --version`, e.g.
// "nix (Nix) 2.8.0" or "nix (Lix, like Nix) 2.91.1".
func ParseVersion(s string) (Version, error) {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	line = strings.TrimSpace(line)
	m := versionRE.FindStringSubmatch(line)
	if m == nil {
		return Version{}, fmt.Errorf("parse nix version %q: want \"nix (<implementation>) <major>.<minor>[.<patch>]\"", line)
	}
	v := Version{Impl: m[1], Suffix: m[5], Raw: line}
	v.Major, _ = strconv.Atoi(m[2])
	v.Minor, _ = strconv.Atoi(m[3])
	if m[4] != "" {
		v.Patch, _ = strconv.Atoi(m[4])
	}
	return v, nil
}

// Version asks nix for its version once per Runner; later calls return
// the answer remembered. A failed attempt is not remembered.
func (r *Runner) Version(ctx context.Context) (Version, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.version != nil {
		return *r.version, nil
	}
	out, err := r.output(ctx, []string{"nix", "--version"})
	if err != nil {
		return Version{}, fmt.Errorf("nix version: %w", err)
	}
	v, err := ParseVersion(string(out))
	if err != nil {
		return Version{}, err
	}
	r.version = &v
	return v, nil
}
