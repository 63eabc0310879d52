package plan

import (
	"errors"
	"fmt"
	"slices"
	"sort"
)

// Path is one store path of a closure with its NAR size in bytes, as the
// nix queries report it.
type Path struct {
	Path    string `json:"path"`
	NarSize int64  `json:"narSize"`
}

// Kind says how a package changed between two closures.
type Kind string

const (
	Upgraded   Kind = "upgraded"   // one version before, a newer one after
	Downgraded Kind = "downgraded" // one version before, an older one after
	Changed    Kind = "changed"    // several versions on a side, or versions that differ but compare equal
	Added      Kind = "added"      // only in the new closure
	Removed    Kind = "removed"    // only in the current closure
)

// Kinds lists the kinds in the order renderers show them.
var Kinds = []Kind{Upgraded, Downgraded, Changed, Added, Removed}

// Package is one package name whose versions differ between the closures.
// All outputs and all store paths sharing a name are grouped, so a closure
// holding two openssl versions shows as one entry with two versions.
type Package struct {
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	// Before and After are the distinct versions on each side, oldest
	// first; "" stands for a path with no version. Empty for the side
	// where the package is absent.
	Before []string `json:"before,omitempty"`
	After  []string `json:"after,omitempty"`
	// Sizes are the summed NAR sizes of the package's paths on each side.
	SizeBefore int64 `json:"sizeBefore"`
	SizeAfter  int64 `json:"sizeAfter"`
	SizeDelta  int64 `json:"sizeDelta"`
}

// Totals is the size of one closure.
type Totals struct {
	Paths int   `json:"paths"`
	Bytes int64 `json:"bytes"`
}

// Diff is the difference between a node's current closure and the new one.
type Diff struct {
	Before Totals `json:"before"`
	After  Totals `json:"after"`
	// Packages holds every name whose set of versions changed, sorted by
	// name.
	Packages []Package `json:"packages,omitempty"`
	// Rebuilt counts the names whose versions are the same on both sides
	// but whose store paths differ (new dependencies, changed options).
	// A NixOS system has many of these (etc, unit files); they are
	// counted rather than listed so they do not drown the real changes.
	Rebuilt int `json:"rebuilt"`
}

// BytesDelta is the change in closure size.
func (d *Diff) BytesDelta() int64 { return d.After.Bytes - d.Before.Bytes }

// PathsDelta is the change in the number of closure paths.
func (d *Diff) PathsDelta() int { return d.After.Paths - d.Before.Paths }

// Empty reports whether the two closures held exactly the same paths.
func (d *Diff) Empty() bool {
	return len(d.Packages) == 0 && d.Rebuilt == 0 && d.Before == d.After
}

// Count returns how many packages changed in the given way.
func (d *Diff) Count(k Kind) int {
	n := 0
	for _, p := range d.Packages {
		if p.Kind == k {
			n++
		}
	}
	return n
}

// Of returns the packages that changed in the given way, in name order.
func (d *Diff) Of(k Kind) []Package {
	var out []Package
	for _, p := range d.Packages {
		if p.Kind == k {
			out = append(out, p)
		}
	}
	return out
}

// side is what one closure holds under one package name.
type side struct {
	versions map[string]bool
	paths    map[string]bool
	bytes    int64
}

// DiffClosures compares the current closure (before) with the new one
// (after), grouping store paths by package name as SplitName parses them.
// storeDir is the store both closures live in ("" for DefaultStoreDir).
// Paths listed twice count once. The result does not depend on the order
// of either input.
func DiffClosures(storeDir string, before, after []Path) (Diff, error) {
	b, bt, errB := group(storeDir, before)
	a, at, errA := group(storeDir, after)
	if err := errors.Join(errB, errA); err != nil {
		return Diff{}, err
	}
	d := Diff{Before: bt, After: at}

	names := make([]string, 0, len(b)+len(a))
	for n := range b {
		names = append(names, n)
	}
	for n := range a {
		if b[n] == nil {
			names = append(names, n)
		}
	}
	sort.Strings(names)

	for _, n := range names {
		sb, sa := b[n], a[n]
		p := Package{Name: n}
		if sb != nil {
			p.Before, p.SizeBefore = sortedVersions(sb.versions), sb.bytes
		}
		if sa != nil {
			p.After, p.SizeAfter = sortedVersions(sa.versions), sa.bytes
		}
		p.SizeDelta = p.SizeAfter - p.SizeBefore
		switch {
		case sb == nil:
			p.Kind = Added
		case sa == nil:
			p.Kind = Removed
		case slices.Equal(p.Before, p.After):
			if !sameKeys(sb.paths, sa.paths) {
				d.Rebuilt++
			}
			continue
		case len(p.Before) == 1 && len(p.After) == 1:
			switch CompareVersions(p.Before[0], p.After[0]) {
			case -1:
				p.Kind = Upgraded
			case 1:
				p.Kind = Downgraded
			default:
				p.Kind = Changed
			}
		default:
			p.Kind = Changed
		}
		d.Packages = append(d.Packages, p)
	}
	return d, nil
}

func group(storeDir string, closure []Path) (map[string]*side, Totals, error) {
	groups := map[string]*side{}
	seen := map[string]bool{}
	var t Totals
	var firstErr error
	bad := 0
	for _, p := range closure {
		if seen[p.Path] {
			continue
		}
		seen[p.Path] = true
		sp, err := ParseStorePath(storeDir, p.Path)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			bad++
			continue
		}
		t.Paths++
		t.Bytes += p.NarSize
		g := groups[sp.Name.Name]
		if g == nil {
			g = &side{versions: map[string]bool{}, paths: map[string]bool{}}
			groups[sp.Name.Name] = g
		}
		g.versions[sp.Version] = true
		g.paths[p.Path] = true
		g.bytes += p.NarSize
	}
	if bad > 1 {
		return nil, t, fmt.Errorf("%w (and %d more)", firstErr, bad-1)
	}
	return groups, t, firstErr
}

// sortedVersions lists versions oldest first; versions that compare equal
// are ordered bytewise so the output is deterministic.
func sortedVersions(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for v := range set {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool {
		if c := CompareVersions(out[i], out[j]); c != 0 {
			return c < 0
		}
		return out[i] < out[j]
	})
	return out
}

func sameKeys(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}
