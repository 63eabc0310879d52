package fleet

import (
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"golang.org/x/crypto/ssh"
)

// ConfigFileName is the optional file beside flake.nix.
const ConfigFileName = "tether.toml"

// The tether.toml schema as decoded. Pointers tell "not written" from a
// zero value, so a node entry only overrides what it names.
type tomlFile struct {
	KnownHosts  *string              `toml:"known_hosts"`
	Concurrency *int                 `toml:"concurrency"`
	Defaults    *tomlSettings        `toml:"defaults"`
	Nodes       map[string]*tomlNode `toml:"nodes"`
}

type tomlSettings struct {
	fileSettings[tomlDuration]
	BuildHost *string `toml:"build_host"`
}

type tomlNode struct {
	tomlSettings
	Attr         *string      `toml:"attr"`
	Hostname     *string      `toml:"hostname"`
	Port         *int         `toml:"port"`
	Jump         []string     `toml:"jump"`
	ProxyCommand *string      `toml:"proxy_command"`
	HostKey      *string      `toml:"host_key"`
	HostKeyAlias *string      `toml:"host_key_alias"`
	Tags         []string     `toml:"tags"`
	System       *string      `toml:"system"`
	Wave         *int         `toml:"wave"`
	Reboot       *bool        `toml:"reboot"`
	Health       []tomlHealth `toml:"health"`
}

type tomlHealth struct {
	Name    *string       `toml:"name"`
	HTTP    *string       `toml:"http"`
	Status  *int          `toml:"status"`
	Command []string      `toml:"command"`
	Timeout *tomlDuration `toml:"timeout"`
}

// tomlDuration accepts a Go duration string ("30s", "2m") or an integer
// number of seconds, the unit the deploy.nodes schema uses.
type tomlDuration time.Duration

func (d *tomlDuration) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		*d = tomlDuration(time.Duration(v) * time.Second)
	case string:
		p, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("invalid duration %q: want e.g. \"30s\" or \"2m\", or seconds as an integer", v)
		}
		*d = tomlDuration(p)
	default:
		return fmt.Errorf("want a duration such as \"30s\" or seconds as an integer, not %T", v)
	}
	return nil
}

func (d *tomlDuration) ptr() *time.Duration {
	if d == nil {
		return nil
	}
	v := time.Duration(*d)
	return &v
}

// config is a tether.toml checked on its own. What needs the flake too
// (jump targets, build hosts, which nodes exist) is checked by resolve.
type config struct {
	file           string // as shown in messages
	knownHosts     string // as written
	knownHostsAt   Origin
	concurrency    int
	defaults       layer
	defaultBuild   *string
	defaultBuildAt Origin
	nodes          map[string]*configNode
}

type configNode struct {
	name     string
	raw      *tomlNode
	at       Origin // the node's table
	settings layer
	attr     []string // parsed attr path, nil when not written
	jumps    []jumpSpec
	health   []HealthCheck
	origin   func(key ...string) Origin
}

type jumpSpec struct {
	raw string
	at  Origin
	// hop is the parsed literal address; nil for a bare word, which must
	// name a node.
	hop *Hop
}

// parseConfig decodes and checks a tether.toml. file is the name used in
// messages (relative to the flake directory).
func parseConfig(file string, data []byte) (*config, error) {
	var raw tomlFile
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		return nil, decodeError(file, err)
	}
	lines := scanKeyLines(string(data))
	origin := func(key ...string) Origin {
		return Origin{Source: OriginConfig, Key: toml.Key(key).String(), File: file, Line: lines.line(key)}
	}

	var errs errorList
	checkUnknownKeys(&md, origin, &errs)
	// The decoder silently ignores a non-table where a map is wanted
	// (`nodes = 3`); implicit tables have no type at all.
	if t := md.Type("nodes"); t != "" && t != "Hash" {
		errs.add(origin("nodes"), "", "nodes", "want a table of nodes ([nodes.<name>]), found %s", strings.ToLower(md.Type("nodes")))
	}

	c := &config{file: file, nodes: map[string]*configNode{}}
	if raw.KnownHosts != nil {
		c.knownHosts, c.knownHostsAt = *raw.KnownHosts, origin("known_hosts")
		if *raw.KnownHosts == "" || hasControl(*raw.KnownHosts) {
			errs.add(c.knownHostsAt, "", "known_hosts", "invalid path %q", *raw.KnownHosts)
		}
	}
	if raw.Concurrency != nil {
		c.concurrency = *raw.Concurrency
		if c.concurrency < 1 {
			errs.add(origin("concurrency"), "", "concurrency", "must be at least 1, not %d", c.concurrency)
		}
	}
	if raw.Defaults != nil {
		c.defaults = tomlLayer(raw.Defaults, func(k string) Origin { return origin("defaults", k) })
		validateLayer(c.defaults, "", func(k string) string { return "defaults." + tomlName(k) }, &errs)
		if b := raw.Defaults.BuildHost; b != nil {
			c.defaultBuild, c.defaultBuildAt = b, origin("defaults", "build_host")
			checkBuildHostSyntax(*b, c.defaultBuildAt, "", "defaults.build_host", &errs)
		}
	}
	for name, n := range raw.Nodes {
		if n == nil {
			continue
		}
		c.nodes[name] = parseConfigNode(name, n, origin, lines, &errs)
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return c, nil
}

func parseConfigNode(name string, n *tomlNode, fileOrigin func(...string) Origin, lines keyLines, errs *errorList) *configNode {
	origin := func(key ...string) Origin { return fileOrigin(append([]string{"nodes", name}, key...)...) }
	cn := &configNode{name: name, raw: n, at: origin(), origin: origin}
	if err := checkNodeName(name); err != nil {
		errs.add(cn.at, "", "nodes", "%v", err)
		return cn
	}
	bad := func(key string, format string, args ...any) { errs.add(origin(key), name, key, format, args...) }

	cn.settings = tomlLayer(&n.tomlSettings, func(k string) Origin { return origin(k) })
	validateLayer(cn.settings, name, tomlName, errs)
	if n.BuildHost != nil {
		checkBuildHostSyntax(*n.BuildHost, origin("build_host"), name, "build_host", errs)
	}

	if n.Attr != nil {
		p, err := parseAttrPath(*n.Attr)
		if err != nil {
			bad("attr", "%v", err)
		}
		cn.attr = p
	}
	if n.Hostname != nil {
		if err := checkHost(*n.Hostname); err != nil {
			bad("hostname", "%v", err)
		}
	}
	if n.Port != nil && (*n.Port < 1 || *n.Port > 65535) {
		bad("port", "invalid port %d", *n.Port)
	}
	seen := map[string]bool{}
	for _, j := range n.Jump {
		spec := jumpSpec{raw: j, at: origin("jump")}
		switch {
		case seen[j]:
			bad("jump", "%q is listed twice", j)
		case j == "":
			bad("jump", "empty jump target")
		case looksLikeNodeName(j):
			if err := checkNodeName(j); err != nil {
				bad("jump", "%v", err)
			}
		default:
			h, err := ParseHop(j)
			if err != nil {
				bad("jump", "%v", err)
			}
			spec.hop = &h
		}
		seen[j] = true
		cn.jumps = append(cn.jumps, spec)
	}
	if n.ProxyCommand != nil && (strings.TrimSpace(*n.ProxyCommand) == "" || hasControl(*n.ProxyCommand)) {
		bad("proxy_command", "invalid command %q", *n.ProxyCommand)
	}
	if n.HostKey != nil {
		if err := checkHostKey(*n.HostKey); err != nil {
			bad("host_key", "%v", err)
		}
	}
	if n.HostKeyAlias != nil {
		if err := checkHost(*n.HostKeyAlias); err != nil {
			bad("host_key_alias", "%v", err)
		}
	}
	tags := map[string]bool{}
	for _, t := range n.Tags {
		if err := checkTag(t); err != nil {
			bad("tags", "%v", err)
		} else if tags[t] {
			bad("tags", "tag %q is listed twice", t)
		}
		tags[t] = true
	}
	if n.System != nil {
		if err := checkSystem(*n.System); err != nil {
			bad("system", "%v", err)
		}
	}
	if n.Wave != nil && *n.Wave < 0 {
		bad("wave", "must not be negative, not %d", *n.Wave)
	}
	for i, h := range n.Health {
		at := origin("health")
		at.Line = lines.element(toml.Key{"nodes", name, "health"}, i)
		cn.health = append(cn.health, parseHealth(h, at, name, i, errs))
	}
	return cn
}

func parseHealth(h tomlHealth, at Origin, node string, i int, errs *errorList) HealthCheck {
	key := fmt.Sprintf("health[%d]", i)
	hc := HealthCheck{Origin: at, ExpectStatus: 200}
	if h.Name != nil {
		hc.Name = *h.Name
	}
	if h.HTTP != nil {
		hc.HTTP = *h.HTTP
		u, err := url.Parse(hc.HTTP)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs.add(at, node, key, "invalid http URL %q: want http:// or https:// with a host", hc.HTTP)
		}
	}
	if h.Status != nil {
		hc.ExpectStatus = *h.Status
		if hc.ExpectStatus < 100 || hc.ExpectStatus > 599 {
			errs.add(at, node, key, "invalid status %d", hc.ExpectStatus)
		}
		if h.HTTP == nil {
			errs.add(at, node, key, "status is only for http checks")
		}
	}
	if h.Command != nil {
		hc.Command = h.Command
		if len(hc.Command) == 0 || hc.Command[0] == "" {
			errs.add(at, node, key, "command must be a non-empty argv list")
		}
		for _, a := range hc.Command {
			if strings.ContainsRune(a, 0) {
				errs.add(at, node, key, "command argument %q contains NUL", a)
			}
		}
	}
	if (h.HTTP == nil) == (h.Command == nil) {
		errs.add(at, node, key, "set exactly one of http and command")
	}
	if t := h.Timeout.ptr(); t != nil {
		hc.Timeout = *t
		if hc.Timeout <= 0 {
			errs.add(at, node, key, "timeout must be positive")
		}
	}
	if hc.Name == "" {
		if hc.HTTP != "" {
			hc.Name = hc.HTTP
		} else {
			hc.Name = strings.Join(hc.Command, " ")
		}
	}
	return hc
}

func checkHostKey(k string) error {
	_, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(k))
	if err != nil {
		return fmt.Errorf("invalid host key %q: want the public key line, e.g. \"ssh-ed25519 AAAA...\"", k)
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return fmt.Errorf("host_key holds more than one key; pin one")
	}
	return nil
}

func checkBuildHostSyntax(b string, at Origin, node, key string, errs *errorList) {
	switch {
	case b == "" || b == "local":
	case looksLikeNodeName(b):
		if err := checkNodeName(b); err != nil {
			errs.add(at, node, key, "%v", err)
		}
	default:
		if _, err := ParseHop(b); err != nil {
			errs.add(at, node, key, "%v", err)
		}
	}
}

func tomlLayer(s *tomlSettings, at func(key string) Origin) layer {
	l := layer{
		set: s.overrides(func(_ string, d *tomlDuration) *time.Duration { return d.ptr() }),
		at:  map[string]Origin{},
	}
	for _, sp := range settingSpecs {
		l.at[sp.key] = at(sp.tomlKey)
	}
	return l
}

// tomlName is the tether.toml spelling of a schema key.
func tomlName(key string) string {
	for _, sp := range settingSpecs {
		if sp.key == key {
			return sp.tomlKey
		}
	}
	return key
}

// checkUnknownKeys reports keys the schema does not have: those the
// decoder left undecoded, and those it matched only by ignoring case (the
// decoder folds case; the documented keys are lower case).
func checkUnknownKeys(md *toml.MetaData, origin func(...string) Origin, errs *errorList) {
	unknown := map[string]bool{}
	var keys []toml.Key
	for _, k := range md.Undecoded() {
		unknown[k.String()] = true
		keys = append(keys, k)
	}
	for _, k := range md.Keys() {
		if !unknown[k.String()] && !schemaHas(reflect.TypeOf(tomlFile{}), k) {
			unknown[k.String()] = true
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		// Report a table once, not each key under it.
		parentUnknown := false
		for n := 1; n < len(k); n++ {
			if unknown[k[:n].String()] {
				parentUnknown = true
			}
		}
		if parentUnknown {
			continue
		}
		node, rel := "", k.String()
		if len(k) > 2 && k[0] == "nodes" {
			node, rel = k[1], k[2:].String()
		}
		msg := "unknown key"
		if s := suggestKey(k); s != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", s)
		}
		errs.add(origin(k...), node, rel, "%s", msg)
	}
}

// schemaHas walks the decoded types by their toml tags, exactly.
func schemaHas(t reflect.Type, key toml.Key) bool {
	for _, seg := range key {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct {
			t = t.Elem() // array of tables: keys continue in the element
		}
		switch t.Kind() {
		case reflect.Map:
			t = t.Elem()
		case reflect.Struct:
			f, ok := tomlField(t, seg)
			if !ok {
				return false
			}
			t = f
		default:
			return false
		}
	}
	return true
}

func tomlField(t reflect.Type, name string) (reflect.Type, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous && f.Tag.Get("toml") == "" {
			if ft, ok := tomlField(f.Type, name); ok {
				return ft, true
			}
			continue
		}
		if tag, _, _ := strings.Cut(f.Tag.Get("toml"), ","); tag == name {
			return f.Type, true
		}
	}
	return nil, false
}

func tomlNames(t reflect.Type) []string {
	var names []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous && f.Tag.Get("toml") == "" {
			names = append(names, tomlNames(f.Type)...)
			continue
		}
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		names = append(names, tag)
	}
	return names
}

// suggestKey proposes the documented key for a misspelt one, such as the
// camelCase spelling of the deploy.nodes schema ("sshUser" → "ssh_user").
func suggestKey(key toml.Key) string {
	t := reflect.TypeOf(tomlFile{})
	if len(key) > 1 && !schemaHas(t, key[:len(key)-1]) {
		return ""
	}
	for _, seg := range key[:len(key)-1] {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() == reflect.Map {
			t = t.Elem()
			continue
		}
		t, _ = tomlField(t, seg)
	}
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return ""
	}
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "")) }
	want := norm(key[len(key)-1])
	for _, n := range tomlNames(t) {
		if norm(n) == want {
			return n
		}
	}
	return ""
}

// goTypeName matches the decoder's mention of our Go types, which mean
// nothing to a user.
var goTypeName = regexp.MustCompile(` for \*?[A-Za-z_.]+:`)

var decodeErrorPattern = regexp.MustCompile(`^toml: line (\d+) \(last key "((?:[^"\\]|\\.)*)"\): (.*)$`)

// decodeError turns a decoder error into a ConfigError with file:line and,
// when the key is under a node, the node's name.
func decodeError(file string, err error) error {
	ce := &ConfigError{File: file, Err: err}
	var pe toml.ParseError
	if errors.As(err, &pe) {
		ce.Line = pe.Position.Line
		ce.Err = errors.New(pe.Message)
		if pe.LastKey != "" && !strings.HasPrefix(pe.Message, "Key '") {
			setKey(ce, pe.LastKey)
		}
		return ce
	}
	if m := decodeErrorPattern.FindStringSubmatch(err.Error()); m != nil {
		ce.Line, _ = strconv.Atoi(m[1])
		ce.Err = errors.New(goTypeName.ReplaceAllString(m[3], ":"))
		key := m[2]
		if u, err := strconv.Unquote(`"` + m[2] + `"`); err == nil {
			key = u
		}
		setKey(ce, key)
	}
	return ce
}

func setKey(ce *ConfigError, key string) {
	k := (&tomlScanner{src: key}).key()
	if len(k) >= 2 && k[0] == "nodes" {
		ce.Node, ce.Key = k[1], k[2:].String()
		return
	}
	ce.Key = k.String()
}

// parseAttrPath splits a flake attribute path such as
// `nixosConfigurations."my.host".config.system.build.toplevel`. Segments
// are bare names or double-quoted without escapes; anything richer has no
// business in an attribute path and is refused.
func parseAttrPath(s string) ([]string, error) {
	var path []string
	rest := s
	for {
		var seg string
		if strings.HasPrefix(rest, `"`) {
			end := strings.Index(rest[1:], `"`)
			if end < 0 {
				return nil, fmt.Errorf("attribute path %q: unterminated quote", s)
			}
			seg, rest = rest[1:end+1], rest[end+2:]
			if seg == "" || strings.ContainsAny(seg, `\$`) || hasControl(seg) {
				return nil, fmt.Errorf("attribute path %q: invalid quoted name %q", s, seg)
			}
		} else {
			end := strings.IndexByte(rest, '.')
			if end < 0 {
				end = len(rest)
			}
			seg, rest = rest[:end], rest[end:]
			if !bareAttrPattern.MatchString(seg) {
				return nil, fmt.Errorf("attribute path %q: invalid name %q", s, seg)
			}
		}
		path = append(path, seg)
		if rest == "" {
			return path, nil
		}
		if !strings.HasPrefix(rest, ".") {
			return nil, fmt.Errorf("attribute path %q: expected '.' before %q", s, rest)
		}
		rest = rest[1:]
	}
}

var bareAttrPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_'-]*$`)
