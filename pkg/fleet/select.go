package fleet

import (
	"cmp"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"unicode"
)

// Select picks nodes by name, by `@tag`, or by glob (path.Match syntax:
// `rpi-*`, `web[12]`). Arguments may also hold several terms separated by
// commas or white space, as Action inputs do. No term means every node.
//
// A term that selects nothing is an error (a typo must not turn into a
// silently smaller deploy); all such errors are returned together. The
// result is ordered by wave, then by name.
func Select(f *Fleet, args []string) ([]*Node, error) {
	var terms []string
	for _, a := range args {
		terms = append(terms, strings.FieldsFunc(a, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })...)
	}
	chosen := map[string]*Node{}
	if len(terms) == 0 {
		for name, n := range f.Nodes {
			chosen[name] = n
		}
	}
	var errs []error
	for _, t := range terms {
		var matched []*Node
		switch {
		case strings.HasPrefix(t, "@"):
			tag := t[1:]
			for _, n := range f.Nodes {
				if slices.Contains(n.Tags, tag) {
					matched = append(matched, n)
				}
			}
			if len(matched) == 0 {
				errs = append(errs, fmt.Errorf("no node has tag %q (tags: %s)", tag, orNone(f.tags())))
			}
		case strings.ContainsAny(t, `*?[\`):
			if _, err := path.Match(t, ""); err != nil {
				errs = append(errs, fmt.Errorf("bad node pattern %q: %w", t, err))
				continue
			}
			for name, n := range f.Nodes {
				if ok, _ := path.Match(t, name); ok {
					matched = append(matched, n)
				}
			}
			if len(matched) == 0 {
				errs = append(errs, fmt.Errorf("pattern %q matches no node (nodes: %s)", t, orNone(f.Names())))
			}
		default:
			n := f.Nodes[t]
			if n == nil {
				errs = append(errs, fmt.Errorf("unknown node %q (nodes: %s)", t, orNone(f.Names())))
				continue
			}
			matched = append(matched, n)
		}
		for _, n := range matched {
			chosen[n.Name] = n
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("select nodes: %w", errors.Join(errs...))
	}
	out := make([]*Node, 0, len(chosen))
	for _, n := range chosen {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b *Node) int {
		return cmp.Or(cmp.Compare(a.Wave, b.Wave), cmp.Compare(a.Name, b.Name))
	})
	return out, nil
}

// tags returns every tag in use, sorted.
func (f *Fleet) tags() []string {
	set := map[string]bool{}
	for _, n := range f.Nodes {
		for _, t := range n.Tags {
			set[t] = true
		}
	}
	return sortedKeys(set)
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}
