package fleet

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
)

// Names are what a node selection can name: nodes and tags.
type Names struct {
	Nodes []string
	Tags  []string
}

// ListNames lists the nodes and tags of the fleet in opts.Dir cheaply: the
// nodes and tags tether.toml names, and the names of deploy.nodes
// (`builtins.attrNames`, which evaluates no node). It is for shell
// completion, which must answer at once, so it checks nothing Load
// would; names that are not valid node names are left out, since they
// end up on a command line.
func ListNames(ctx context.Context, ev Evaluator, opts LoadOptions) (Names, error) {
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return Names{}, fmt.Errorf("list node names: %w", err)
	}
	flake := opts.Flake
	if flake == "" {
		flake = dir
	}
	var n Names
	cfg, _, err := readConfig(dir, opts.ConfigFile)
	if err != nil {
		return Names{}, err
	}
	if cfg != nil {
		for name, node := range cfg.nodes {
			n.Nodes = append(n.Nodes, name)
			n.Tags = append(n.Tags, node.raw.Tags...)
		}
	}
	var fromFlake []string
	if err := ev.EvalJSON(ctx, flake+"#deploy.nodes", "builtins.attrNames", &fromFlake); err != nil && !isMissingAttr(err) {
		return n.clean(), fmt.Errorf("list node names: %w", err)
	}
	n.Nodes = append(n.Nodes, fromFlake...)
	return n.clean(), nil
}

// clean sorts, dedupes and drops what is not a valid name.
func (n Names) clean() Names {
	keep := func(list []string, valid func(string) bool) []string {
		list = slices.DeleteFunc(list, func(s string) bool { return !valid(s) })
		slices.Sort(list)
		return slices.Compact(list)
	}
	return Names{
		Nodes: keep(n.Nodes, ValidNodeName),
		Tags:  keep(n.Tags, tagPattern.MatchString),
	}
}
