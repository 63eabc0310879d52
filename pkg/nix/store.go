package nix

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Argument lists of store paths are cut into chunks: a command run over
// SSH travels as one shell line, and Linux caps a single argument (that
// line) at 128 KiB.
const (
	chunkMaxPaths = 1000
	chunkMaxBytes = 64 << 10
)

// chunks splits paths into runs that fit one command line.
func chunks(paths []string) [][]string {
	var out [][]string
	start, size := 0, 0
	for i, p := range paths {
		if i > start && (i-start >= chunkMaxPaths || size+len(p)+1 > chunkMaxBytes) {
			out = append(out, paths[start:i])
			start, size = i, 0
		}
		size += len(p) + 1
	}
	if start < len(paths) {
		out = append(out, paths[start:])
	}
	return out
}

func lines(data []byte) []string {
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func dedupe(paths []string) []string {
	seen := make(map[string]bool, len(paths))
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// Realise builds (or substitutes) the derivations in one nix-store
// invocation, so nix schedules them together, and returns each
// derivation's output paths (sorted). With gcRootDir (an absolute directory on the
// machine the Executor runs on, created when missing) every output is
// rooted there until the caller removes the directory, so a garbage
// collection during a long deploy cannot delete what is about to be
// copied. The build log streams to the Runner's Log.
//
// The outputs are learnt with `nix-store --query --outputs` rather than
// from the new command line, whose `drv^out` / `drv!out` syntax differs
// between versions.
func (r *Runner) Realise(ctx context.Context, drvPaths []string, gcRootDir string) (map[string][]string, error) {
	drvPaths = dedupe(drvPaths)
	if len(drvPaths) == 0 {
		return map[string][]string{}, nil
	}
	if err := checkRealise(drvPaths, gcRootDir); err != nil {
		return nil, err
	}
	outputs := make(map[string][]string, len(drvPaths))
	for _, d := range drvPaths {
		out, err := r.output(ctx, r.storeArgv("--query", "--outputs", d))
		if err != nil {
			return nil, fmt.Errorf("realise: outputs of %s: %w", d, err)
		}
		outputs[d] = lines(out)
		slices.Sort(outputs[d])
	}
	if err := r.RealiseWith(ctx, drvPaths, RealiseOptions{GCRootDir: gcRootDir}); err != nil {
		return nil, err
	}
	return outputs, nil
}

// RealiseOptions tune RealiseWith.
type RealiseOptions struct {
	// GCRootDir, when set, roots every output there once all are built
	// (see Realise).
	GCRootDir string
	// KeepGoing builds what can be built when some derivations fail,
	// instead of stopping at the first failure.
	KeepGoing bool
}

// RealiseWith is Realise for callers that know the outputs already (from
// the evaluation) and learn which were built by asking for their
// validity: it spares a nix process per derivation.
func (r *Runner) RealiseWith(ctx context.Context, drvPaths []string, opts RealiseOptions) error {
	drvPaths = dedupe(drvPaths)
	if len(drvPaths) == 0 {
		return nil
	}
	if err := checkRealise(drvPaths, opts.GCRootDir); err != nil {
		return err
	}
	args := append([]string{"--realise"}, drvPaths...)
	if opts.KeepGoing {
		args = append(args, "--keep-going")
	}
	if opts.GCRootDir != "" {
		args = append(args, "--add-root", path.Join(opts.GCRootDir, rootName(drvPaths)))
	}
	if err := r.run(ctx, r.storeArgv(args...), nil, nil); err != nil {
		return fmt.Errorf("realise %d derivations: %w", len(drvPaths), err)
	}
	return nil
}

func checkRealise(drvPaths []string, gcRootDir string) error {
	for _, d := range drvPaths {
		if !strings.HasSuffix(d, ".drv") || !path.IsAbs(d) {
			return fmt.Errorf("realise: %q is not a derivation path", d)
		}
	}
	if gcRootDir != "" && !path.IsAbs(gcRootDir) {
		return fmt.Errorf("realise: GC root directory %q is not absolute", gcRootDir)
	}
	return nil
}

// AddRoots roots valid store paths in gcRootDir (as Realise roots its
// outputs) until the caller removes the directory: outputs handed on
// before the build that made them has ended, whose own roots come only
// once every build has succeeded.
func (r *Runner) AddRoots(ctx context.Context, paths []string, gcRootDir string) error {
	paths = dedupe(paths)
	if len(paths) == 0 {
		return nil
	}
	if !path.IsAbs(gcRootDir) {
		return fmt.Errorf("add GC roots: directory %q is not absolute", gcRootDir)
	}
	for _, p := range paths {
		if !path.IsAbs(p) {
			return fmt.Errorf("add GC roots: %q is not a store path", p)
		}
	}
	args := append([]string{"--realise"}, paths...)
	args = append(args, "--add-root", path.Join(gcRootDir, "out-"+rootName(paths)))
	if err := r.run(ctx, r.storeArgv(args...), nil, nil); err != nil {
		return fmt.Errorf("add GC roots for %d paths: %w", len(paths), err)
	}
	return nil
}

// rootName names the GC roots of one Realise call after the set of
// derivations, so two calls sharing a directory do not replace each
// other's roots. nix adds "-2", "-3", ... per derivation and "-<output>"
// for outputs other than out.
func rootName(drvPaths []string) string {
	sorted := slices.Clone(drvPaths)
	slices.Sort(sorted)
	sum := sha256.Sum256([]byte(strings.Join(sorted, "\n")))
	return "build-" + hex.EncodeToString(sum[:8])
}

// PathInfo describes one store path of a closure.
type PathInfo struct {
	Path string
	// NarHash is the hash of the path's NAR serialisation, as nix prints
	// it (base-16 SHA-256).
	NarHash string
	// NarSize is the size of that serialisation in bytes: what a copy
	// moves before compression.
	NarSize int64
	// References are the store paths this one refers to (may include
	// itself).
	References []string
	// Deriver is the derivation that produced the path, if known.
	Deriver string
}

// Closure returns every path the given store paths need, themselves
// included, with sizes and references, ordered so that each path comes
// after all it references: the order a copy must import them in.
//
// It uses `nix-store --query --requisites` and `nix-store --dump-db`,
// which print the same from Nix 2.8 to today; `nix path-info --json`
// changed its shape twice in that time.
func (r *Runner) Closure(ctx context.Context, paths []string) ([]PathInfo, error) {
	paths = dedupe(paths)
	if len(paths) == 0 {
		return nil, nil
	}
	var closure []string
	for _, c := range chunks(paths) {
		out, err := r.output(ctx, r.storeArgv(append([]string{"--query", "--requisites"}, c...)...))
		if err != nil {
			return nil, fmt.Errorf("closure of %d paths: %w", len(paths), err)
		}
		closure = append(closure, lines(out)...)
	}
	closure = dedupe(closure)
	infos := make([]PathInfo, 0, len(closure))
	for _, c := range chunks(closure) {
		out, err := r.output(ctx, r.storeArgv(append([]string{"--dump-db"}, c...)...))
		if err != nil {
			return nil, fmt.Errorf("closure: path info: %w", err)
		}
		got, err := ParseDumpDB(out)
		if err != nil {
			return nil, fmt.Errorf("closure: %w", err)
		}
		infos = append(infos, got...)
	}
	return SortReferencesFirst(infos)
}

// Subclosure picks from infos, which must hold the closure of roots, the
// paths the roots reach, references first: one Closure query of a whole
// fleet's roots then serves each node's copy.
func Subclosure(infos []PathInfo, roots []string) ([]PathInfo, error) {
	byPath := make(map[string]PathInfo, len(infos))
	for _, in := range infos {
		byPath[in.Path] = in
	}
	seen := make(map[string]bool)
	var out []PathInfo
	stack := slices.Clone(roots)
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[p] {
			continue
		}
		in, ok := byPath[p]
		if !ok {
			return nil, fmt.Errorf("subclosure: %s is not in the closure given", p)
		}
		seen[p] = true
		out = append(out, in)
		stack = append(stack, in.References...)
	}
	return SortReferencesFirst(out)
}

// ParseDumpDB reads the registration records printed by
// `nix-store --dump-db <paths>`: per path its path, NAR hash, NAR size,
// deriver (empty line when unknown), the number of references and the
// references, one per line.
func ParseDumpDB(data []byte) ([]PathInfo, error) {
	ls := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(ls) == 1 && ls[0] == "" {
		return nil, nil
	}
	var out []PathInfo
	for i := 0; i < len(ls); {
		if len(ls)-i < 5 {
			return nil, fmt.Errorf("parse path info: record at line %d is cut short", i+1)
		}
		info := PathInfo{Path: ls[i], NarHash: ls[i+1], Deriver: ls[i+3]}
		if !path.IsAbs(info.Path) {
			return nil, fmt.Errorf("parse path info: line %d: %q is not a store path", i+1, info.Path)
		}
		size, err := strconv.ParseInt(ls[i+2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("parse path info of %s: NAR size %q: %w", info.Path, ls[i+2], err)
		}
		info.NarSize = size
		n, err := strconv.Atoi(ls[i+4])
		if err != nil || n < 0 {
			return nil, fmt.Errorf("parse path info of %s: reference count %q", info.Path, ls[i+4])
		}
		i += 5
		if len(ls)-i < n {
			return nil, fmt.Errorf("parse path info of %s: %d references announced, %d lines left", info.Path, n, len(ls)-i)
		}
		info.References = append([]string{}, ls[i:i+n]...)
		i += n
		out = append(out, info)
	}
	return out, nil
}

// SortReferencesFirst orders path infos so that every path comes after the
// paths it references (self-references aside); ties are broken by path,
// so the order is stable. References to paths not in the list are ignored.
func SortReferencesFirst(infos []PathInfo) ([]PathInfo, error) {
	byPath := make(map[string]int, len(infos))
	for i, in := range infos {
		byPath[in.Path] = i
	}
	order := slices.Sorted(maps.Keys(byPath))
	const (
		unseen = iota
		visiting
		done
	)
	state := make(map[string]int, len(infos))
	out := make([]PathInfo, 0, len(byPath))
	var visit func(p string) error
	visit = func(p string) error {
		switch state[p] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("sort closure: reference cycle through %s", p)
		}
		state[p] = visiting
		refs := slices.Clone(infos[byPath[p]].References)
		slices.Sort(refs)
		for _, ref := range refs {
			if _, ok := byPath[ref]; ok && ref != p {
				if err := visit(ref); err != nil {
					return err
				}
			}
		}
		state[p] = done
		out = append(out, infos[byPath[p]])
		return nil
	}
	for _, p := range order {
		if err := visit(p); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Missing returns, in the order given, the paths that are not valid in
// the store: what a copy to it must send (or substitute).
func (r *Runner) Missing(ctx context.Context, paths []string) ([]string, error) {
	paths = dedupe(paths)
	invalid := map[string]bool{}
	for _, c := range chunks(paths) {
		out, err := r.output(ctx, r.storeArgv(append([]string{"--check-validity", "--print-invalid"}, c...)...))
		if err != nil {
			return nil, fmt.Errorf("check validity of %d paths: %w", len(paths), err)
		}
		for _, p := range lines(out) {
			invalid[p] = true
		}
	}
	var missing []string
	for _, p := range paths {
		if invalid[p] {
			missing = append(missing, p)
		}
	}
	return missing, nil
}

// ExportArgv is the command that writes paths, in nix's export format, to
// stdout; `nix-store --export` orders them references first. It takes the
// paths as arguments: keep a remote export under the command-line limit
// (see Missing's chunking) or import several exports one after another.
func (r *Runner) ExportArgv(paths []string) []string {
	return r.storeArgv(append([]string{"--export"}, paths...)...)
}

// ImportArgv is the command that reads an export stream on stdin, adds its
// paths to the store and prints them.
func (r *Runner) ImportArgv() []string { return r.storeArgv("--import") }

// Export writes the export stream of paths to w.
func (r *Runner) Export(ctx context.Context, paths []string, w io.Writer) error {
	if len(paths) == 0 {
		return fmt.Errorf("export: no paths")
	}
	if err := r.run(ctx, r.ExportArgv(paths), nil, w); err != nil {
		return fmt.Errorf("export %d paths: %w", len(paths), err)
	}
	return nil
}

// Import adds the paths of an export stream read from rd to the store and
// returns them.
func (r *Runner) Import(ctx context.Context, rd io.Reader) ([]string, error) {
	var out bytes.Buffer
	if err := r.run(ctx, r.ImportArgv(), rd, &out); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	return lines(out.Bytes()), nil
}

// SetProfileArgv is the command that makes path the next generation of
// the profile (e.g. /nix/var/nix/profiles/system).
func SetProfileArgv(profile, path string) []string {
	return []string{"nix-env", "--profile", profile, "--set", path}
}

// DeleteGenerationArgv is the command that deletes one generation of the
// profile.
func DeleteGenerationArgv(profile string, generation int) []string {
	return []string{"nix-env", "--profile", profile, "--delete-generations", strconv.Itoa(generation)}
}
