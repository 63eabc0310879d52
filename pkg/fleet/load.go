package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Evaluator evaluates a flake installable, applies a Nix function to it
// and decodes the JSON result into out (`nix eval --json <installable>
// --apply <apply>`). The nix package's runner provides it; tests use a
// fake. An error for an attribute the flake does not have should keep
// Nix's message ("does not provide attribute"), or implement
// `MissingAttribute() bool` (and `Suggestions() string` for what Nix
// suggested instead, "Did you mean …?").
type Evaluator interface {
	EvalJSON(ctx context.Context, installable, apply string, out any) error
}

// LoadOptions say where the fleet is and who is loading it.
type LoadOptions struct {
	// Dir is the local directory holding flake.nix (required).
	Dir string
	// Flake is the flake reference to evaluate; "" means Dir.
	Flake string
	// ConfigFile is the tether.toml to read; "" means Dir/tether.toml if
	// it exists. A file named here must exist.
	ConfigFile string
	// LocalUser is the user running tether, the default SSH user
	// (required; the caller looks it up, this package reads no
	// environment).
	LocalUser string
	// Overrides from the command line or Action inputs win over both
	// configuration sources.
	Overrides Overrides
}

// defaultAttrPath is evaluated for a node that only tether.toml names
// (the empty element is the node name).
var defaultAttrPath = []string{"nixosConfigurations", "", "config", "system", "build", "toplevel"}

// Load reads the flake's deploy.nodes and the optional tether.toml and
// resolves them into one Fleet. It evaluates (at most one call for
// deploy.nodes and one per top-level flake output naming tether.toml-only
// nodes) but builds nothing, and returns every configuration error found,
// each with its file:line, before anything else happens.
func Load(ctx context.Context, ev Evaluator, opts LoadOptions) (*Fleet, error) {
	if opts.Dir == "" || opts.LocalUser == "" {
		return nil, errors.New("load fleet: Dir and LocalUser are required")
	}
	if err := checkUser(opts.LocalUser); err != nil {
		return nil, fmt.Errorf("load fleet: local user: %w", err)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("load fleet: %w", err)
	}
	flake := opts.Flake
	if flake == "" {
		flake = dir
	}

	cfg, cfgPath, err := readConfig(dir, opts.ConfigFile)
	if err != nil {
		return nil, err
	}
	knownHosts := ""
	if cfg != nil && cfg.knownHosts != "" {
		knownHosts = cfg.knownHosts
		if !filepath.IsAbs(knownHosts) {
			knownHosts = filepath.Join(dir, knownHosts)
		}
		if _, err := os.Stat(knownHosts); err != nil {
			return nil, &ConfigError{File: cfg.knownHostsAt.File, Line: cfg.knownHostsAt.Line, Key: "known_hosts", Err: err}
		}
	}

	dd, err := evalDeploy(ctx, ev, flake)
	if err != nil {
		return nil, err
	}
	if cfg == nil && len(dd.nodes) == 0 {
		return nil, noNodes(flake, dd)
	}
	tops, err := evalToplevels(ctx, ev, flake, cfg, dd)
	if err != nil {
		return nil, err
	}
	return resolve(resolveInput{
		dir:        dir,
		flake:      flake,
		configFile: cfgPath,
		knownHosts: knownHosts,
		cfg:        cfg,
		deploy:     dd,
		toplevels:  tops,
		localUser:  opts.LocalUser,
		overrides:  opts.Overrides,
	})
}

func readConfig(dir, file string) (*config, string, error) {
	explicit := file != ""
	if !explicit {
		file = filepath.Join(dir, ConfigFileName)
	} else if !filepath.IsAbs(file) {
		abs, err := filepath.Abs(file)
		if err != nil {
			return nil, "", fmt.Errorf("load fleet: %w", err)
		}
		file = abs
	}
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("load fleet: %w", err)
	}
	shown := file
	if rel, err := filepath.Rel(dir, file); err == nil && !strings.HasPrefix(rel, "..") {
		shown = rel
	}
	cfg, err := parseConfig(shown, data)
	if err != nil {
		return nil, "", err
	}
	return cfg, file, nil
}

func evalDeploy(ctx context.Context, ev Evaluator, flake string) (*deployData, error) {
	var raw json.RawMessage
	err := ev.EvalJSON(ctx, flake+"#deploy", deployApply, &raw)
	if err != nil {
		if isMissingAttr(err) {
			dd := &deployData{nodes: map[string]*deployNode{}, missing: true}
			var s interface{ Suggestions() string }
			if errors.As(err, &s) {
				dd.suggestions = s.Suggestions()
			}
			return dd, nil
		}
		return nil, fmt.Errorf("evaluate deploy.nodes of %s: %w", flake, err)
	}
	return decodeDeploy(raw)
}

// noNodes says what to add when the fleet names no machine at all, the
// first thing a flake with only nixosConfigurations meets.
func noNodes(flake string, dd *deployData) error {
	what := "its deploy.nodes is empty"
	if dd.missing {
		what = "it has no deploy output"
		if dd.suggestions != "" {
			what += " (nix: " + dd.suggestions + ")"
		}
	}
	return fmt.Errorf("load fleet: flake %s names no machines: %s, and there is no %s beside its flake.nix; "+
		"add a deploy.nodes output to the flake, or a [nodes.<name>] section per machine to %s",
		flake, what, ConfigFileName, ConfigFileName)
}

func isMissingAttr(err error) bool {
	var m interface{ MissingAttribute() bool }
	if errors.As(err, &m) {
		return m.MissingAttribute()
	}
	return strings.Contains(err.Error(), "does not provide attribute")
}

// toplevelApply selects, for every node, the derivation at its attribute
// path below one flake output, as strings (so nothing is built), or says
// that the path is missing or not a derivation. %s is the wanted set.
const toplevelApply = `root:
let
  want = %s;
  get = path: builtins.foldl' (a: k: if builtins.isAttrs a && a ? ${k} then a.${k} else null) root path;
  str = builtins.unsafeDiscardStringContext;
in builtins.mapAttrs (name: path:
  let v = get path; in
  if v == null then { missing = true; }
  else if builtins.isAttrs v && v ? drvPath then {
    drvPath = str v.drvPath;
    out = str v.outPath;
    name = if v ? name then str v.name else "";
    system = if v ? system then str v.system else "";
  }
  else { notDerivation = true; }) want
`

type rawToplevel struct {
	rawPath
	Missing       bool `json:"missing"`
	NotDerivation bool `json:"notDerivation"`
}

// evalToplevels evaluates the configurations of nodes only tether.toml
// names: one evaluation per top-level output involved (normally just
// nixosConfigurations), never one per node.
func evalToplevels(ctx context.Context, ev Evaluator, flake string, cfg *config, dd *deployData) (map[string]rawPath, error) {
	out := map[string]rawPath{}
	if cfg == nil {
		return out, nil
	}
	groups := map[string]map[string][]string{} // output → node → path below it
	for name, cn := range cfg.nodes {
		if _, ok := dd.nodes[name]; ok {
			continue
		}
		p := cn.attr
		if p == nil {
			p = append([]string(nil), defaultAttrPath...)
			p[1] = name
		}
		if groups[p[0]] == nil {
			groups[p[0]] = map[string][]string{}
		}
		groups[p[0]][name] = p[1:]
	}
	var errs errorList
	for _, output := range sortedKeys(groups) {
		want := groups[output]
		var res map[string]rawToplevel
		err := ev.EvalJSON(ctx, flake+"#"+output, fmt.Sprintf(toplevelApply, nixAttrs(want)), &res)
		if err != nil && !isMissingAttr(err) {
			return nil, fmt.Errorf("evaluate %s of %s: %w", output, flake, err)
		}
		for _, name := range sortedKeys(want) {
			cn := cfg.nodes[name]
			at, key := cn.at, "attr"
			if cn.attr != nil {
				at = cn.origin("attr")
			}
			path := output + "." + joinAttrPath(want[name])
			r, ok := res[name]
			switch {
			case err != nil || !ok || r.Missing:
				if cn.attr == nil {
					key = ""
				}
				errs.add(at, name, key, "%s does not exist in the flake (the node is only in %s; define it there, or set attr)", path, cfg.file)
			case r.NotDerivation || r.OutPath == "":
				errs.add(at, name, key, "%s is not a derivation", path)
			default:
				out[name] = r.rawPath
			}
		}
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return out, nil
}

func joinAttrPath(p []string) string {
	parts := make([]string, len(p))
	for i, s := range p {
		parts[i] = attrName(s)
	}
	return strings.Join(parts, ".")
}

// nixAttrs writes {"name" = ["a" "b"]; ...} with every string quoted by
// nixString: node names and paths are validated already, this keeps them
// data even if a check were to slip.
func nixAttrs(m map[string][]string) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("{")
	for _, n := range names {
		b.WriteString(" " + nixString(n) + " = [")
		for _, s := range m[n] {
			b.WriteString(" " + nixString(s))
		}
		b.WriteString(" ];")
	}
	b.WriteString(" }")
	return b.String()
}

// nixString quotes s as a Nix string literal: backslash, double quote and
// dollar (interpolation) are escaped, control characters spelt out.
func nixString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '\\', '"', '$':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
