package fleet

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
)

// deployApply is the `--apply` function for the flake's `deploy` output.
//
// It copies only the keys of the schema, so toJSON never meets a function
// or a derivation, and replaces every profile `path` by strings: its
// drvPath and outPath with their string context dropped. Reading those
// attributes instantiates the derivation but realises nothing, so loading
// a fleet builds nothing. It also records where each key was written
// (unsafeGetAttrPos), for messages that point into the user's Nix files.
//
// A package named `deploy` shadows the output (the flake lookup tries
// packages.<system>.deploy first on Nix versions without absolute
// attribute paths); that case is reported instead of misread.
const deployApply = `deploy:
let
  settingKeys = [ "sshUser" "user" "sshOpts" "fastConnection" "autoRollback" "magicRollback"
    "confirmTimeout" "activationTimeout" "tempPath" "remoteBuild" "interactiveSudo" "sudo" ];
  keySet = keys: builtins.listToAttrs (map (name: { inherit name; value = null; }) keys);
  pos = name: set:
    let p = builtins.unsafeGetAttrPos name set;
    in if p == null then null else { file = p.file; line = p.line; };
  pick = keys: set:
    let picked = builtins.intersectAttrs (keySet keys) set;
    in picked // { __pos = builtins.mapAttrs (name: _: pos name set) picked; };
  str = builtins.unsafeDiscardStringContext;
  drv = p:
    if builtins.isAttrs p && p ? drvPath then {
      drvPath = str p.drvPath;
      out = str p.outPath;
      name = if p ? name then str p.name else "";
      system = if p ? system then str p.system else "";
    }
    else if builtins.isString p then { out = str p; }
    else throw "deploy.nodes: a profile path is neither a derivation nor a store path";
  profile = profiles: name: set:
    pick (settingKeys ++ [ "profilePath" ]) set // {
      path = if set ? path then drv set.path else null;
      __at = pos name profiles;
    };
  node = nodes: name: set:
    pick (settingKeys ++ [ "hostname" "profilesOrder" ]) set // {
      profiles = builtins.mapAttrs (profile (set.profiles or { })) (set.profiles or { });
      __at = pos name nodes;
    };
in
  if builtins.isAttrs deploy && (deploy.type or null) == "derivation" then { __shadowed = true; }
  else pick settingKeys deploy // {
    nodes = builtins.mapAttrs (node (deploy.nodes or { })) (deploy.nodes or { });
  }
`

// nixPos is a position reported by unsafeGetAttrPos.
type nixPos struct {
	File string `json:"file"`
	Line int    `json:"line"`
}

type rawSettings struct {
	fileSettings[int64] // timeouts in whole seconds

	Pos map[string]*nixPos `json:"__pos"`
}

type rawDeploy struct {
	Shadowed bool `json:"__shadowed"`
	rawSettings
	Nodes map[string]json.RawMessage `json:"nodes"`
}

type rawNode struct {
	rawSettings
	Hostname      *string                    `json:"hostname"`
	ProfilesOrder []string                   `json:"profilesOrder"`
	Profiles      map[string]json.RawMessage `json:"profiles"`
	At            *nixPos                    `json:"__at"`
}

type rawProfile struct {
	rawSettings
	ProfilePath *string  `json:"profilePath"`
	Path        *rawPath `json:"path"`
	At          *nixPos  `json:"__at"`
}

type rawPath struct {
	DrvPath string `json:"drvPath"`
	OutPath string `json:"out"` // not "outPath": toJSON would turn the set into that string
	Name    string `json:"name"`
	System  string `json:"system"`
}

// deployData is the decoded deploy output: top-level settings and nodes.
type deployData struct {
	top   layer
	nodes map[string]*deployNode
	// missing says the flake has no deploy output; suggestions holds what
	// Nix suggested instead ("Did you mean deplyo?").
	missing     bool
	suggestions string
}

type deployNode struct {
	name          string
	at            Origin
	settings      layer
	hostname      *string
	hostnameAt    Origin
	profilesOrder []string
	orderAt       Origin
	profiles      map[string]*deployProfile
}

type deployProfile struct {
	name        string
	at          Origin
	settings    layer
	profilePath *string
	pathAt      Origin
	path        rawPath
}

var storeSourcePrefix = regexp.MustCompile(`^/nix/store/[0-9a-z]{32}-[^/]*/`)

// nixOrigin turns a position inside the flake's source in the store into
// one relative to the flake, as the user knows the file.
func nixOrigin(key string, p *nixPos) Origin {
	o := Origin{Source: OriginDeployNodes, Key: key}
	if p != nil {
		o.File = storeSourcePrefix.ReplaceAllString(p.File, "")
		o.Line = p.Line
	}
	return o
}

// decodeDeploy checks and converts what deployApply produced. Errors name
// the deploy.nodes key and, when Nix knew it, the file and line.
func decodeDeploy(data []byte) (*deployData, error) {
	var raw rawDeploy
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, &ConfigError{Key: "deploy", Err: fmt.Errorf("unexpected shape: %w", err)}
	}
	if raw.Shadowed {
		return nil, &ConfigError{Key: "deploy", Err: fmt.Errorf("the flake attribute `deploy` resolves to a package (packages.<system>.deploy), which hides the deploy output; rename that package")}
	}
	var errs errorList
	d := &deployData{nodes: map[string]*deployNode{}}
	d.top = deployLayer(raw.rawSettings, "deploy", "", &errs)

	for _, name := range sortedKeys(raw.Nodes) {
		key := "deploy.nodes." + attrName(name)
		var rn rawNode
		if err := json.Unmarshal(raw.Nodes[name], &rn); err != nil {
			errs.add(Origin{}, "", key, "%v", jsonTypeError(err))
			continue
		}
		n := &deployNode{name: name, at: nixOrigin(key, rn.At), profiles: map[string]*deployProfile{}}
		if err := checkNodeName(name); err != nil {
			errs.add(n.at, "", key, "%v", err)
			continue
		}
		d.nodes[name] = n
		n.settings = deployLayer(rn.rawSettings, key, name, &errs)
		n.hostname = rn.Hostname
		n.hostnameAt = nixOrigin(key+".hostname", rn.Pos["hostname"])
		if rn.Hostname != nil {
			if err := checkHost(*rn.Hostname); err != nil {
				errs.add(n.hostnameAt, name, "hostname", "%v", err)
			}
		}
		n.profilesOrder = rn.ProfilesOrder
		n.orderAt = nixOrigin(key+".profilesOrder", rn.Pos["profilesOrder"])
		for _, pname := range sortedKeys(rn.Profiles) {
			pkey := key + ".profiles." + attrName(pname)
			var rp rawProfile
			if err := json.Unmarshal(rn.Profiles[pname], &rp); err != nil {
				errs.add(Origin{}, name, "profiles."+attrName(pname), "%v", jsonTypeError(err))
				continue
			}
			p := &deployProfile{name: pname, at: nixOrigin(pkey, rp.At)}
			if err := checkProfileName(pname); err != nil {
				errs.add(p.at, name, "profiles", "%v", err)
				continue
			}
			n.profiles[pname] = p
			p.settings = deployLayer(rp.rawSettings, pkey, name, &errs)
			p.pathAt = nixOrigin(pkey+".path", rp.Pos["path"])
			if rp.Path == nil || rp.Path.OutPath == "" {
				at := p.at
				at.Key = pkey + ".path"
				errs.add(at, name, "profiles."+attrName(pname)+".path", "not set")
			} else {
				p.path = *rp.Path
				for _, sp := range []string{rp.Path.OutPath, rp.Path.DrvPath} {
					if sp != "" && (!strings.HasPrefix(sp, "/") || hasControl(sp)) {
						errs.add(p.at, name, "profiles."+attrName(pname)+".path", "unexpected store path %q", sp)
					}
				}
			}
			p.profilePath = rp.ProfilePath
			if rp.ProfilePath != nil {
				if err := checkAbsPath(*rp.ProfilePath); err != nil {
					errs.add(nixOrigin(pkey+".profilePath", rp.Pos["profilePath"]), name, "profiles."+attrName(pname)+".profilePath", "%v", err)
				}
			}
		}
		seen := map[string]bool{}
		for _, pname := range rn.ProfilesOrder {
			if _, ok := rn.Profiles[pname]; !ok {
				errs.add(n.orderAt, name, "profilesOrder", "names profile %q, which the node does not have", pname)
			}
			if seen[pname] {
				errs.add(n.orderAt, name, "profilesOrder", "names profile %q twice", pname)
			}
			seen[pname] = true
		}
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return d, nil
}

// deployLayer converts one level of settings. Timeouts are whole seconds
// in this schema.
func deployLayer(r rawSettings, key, node string, errs *errorList) layer {
	secs := func(k string, v *int64) *time.Duration {
		if v == nil {
			return nil
		}
		if *v <= 0 {
			errs.add(nixOrigin(key+"."+k, r.Pos[k]), node, relKey(key, node, k), "must be a positive number of seconds, not %d", *v)
			return nil
		}
		d := time.Duration(*v) * time.Second
		return &d
	}
	l := layer{set: r.overrides(secs), at: map[string]Origin{}}
	for _, sp := range settingSpecs {
		l.at[sp.key] = nixOrigin(key+"."+sp.key, r.Pos[sp.key])
	}
	validateLayer(l, node, func(k string) string { return relKey(key, node, k) }, errs)
	return l
}

// relKey names a key relative to its node for messages that already say
// "node <name>".
func relKey(key, node, k string) string {
	if node == "" {
		return key + "." + k
	}
	prefix := "deploy.nodes." + attrName(node)
	rest := strings.TrimPrefix(strings.TrimPrefix(key, prefix), ".")
	if rest == "" {
		return k
	}
	return rest + "." + k
}

// attrName writes an attribute name as Nix would need it in a path.
func attrName(s string) string {
	if bareAttrPattern.MatchString(s) {
		return s
	}
	return fmt.Sprintf("%q", s)
}

func jsonTypeError(err error) error {
	if te, ok := err.(*json.UnmarshalTypeError); ok {
		// The path names the embedded structs the field is promoted
		// from; the user knows only the key.
		field := te.Field
		for _, embedded := range []string{"rawSettings.", "fileSettings."} {
			field = strings.TrimPrefix(field, embedded)
		}
		return fmt.Errorf("%s: want %s, found %s", field, te.Type, te.Value)
	}
	return err
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
