package plan

import (
	"fmt"
	"strings"
)

// DefaultStoreDir is where store paths live unless a node says otherwise.
const DefaultStoreDir = "/nix/store"

// Name is a store path name split into package name, version and output.
type Name struct {
	Name    string
	Version string
	// Output is the output suffix split off the version ("dev" for
	// "openssl-3.0.13-dev"), empty for the default output or when the
	// name has no version.
	Output string
}

// SplitName splits a store path name ("openssl-3.0.13-dev") the way Nix's
// DrvName does: the name ends at the first '-' that is followed by a
// character that is not an ASCII letter, and the version is everything
// after that dash. So "apache-httpd-2.0.48" is apache-httpd 2.0.48 and
// "foo-unstable-2024-01-01" is foo-unstable 2024-01-01; a name with no such
// dash ("etc", "unit-sshd.service") has no version.
//
// On top of Nix's rule, a trailing "-<output>" with a well-known output name
// (dev, man, lib, ...) is split off the version, so that the outputs of one
// package group under one name with one version: "openssl-3.0.13-dev" and
// "openssl-3.0.13" are both openssl 3.0.13. A version that really ends in
// such a word ("1.2-dev") loses it; that only affects how it is displayed.
// Unversioned names keep their suffix ("hello-man" stays as it is), because
// nothing distinguishes it from a name.
func SplitName(s string) Name {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '-' && !isAlpha(s[i+1]) {
			n := Name{Name: s[:i], Version: s[i+1:]}
			if j := strings.LastIndexByte(n.Version, '-'); j > 0 && knownOutputs[n.Version[j+1:]] {
				n.Version, n.Output = n.Version[:j], n.Version[j+1:]
			}
			return n
		}
	}
	return Name{Name: s}
}

// knownOutputs are the output names nixpkgs uses often enough to be worth
// recognising. "out" never appears in a path name but is listed for
// completeness.
var knownOutputs = map[string]bool{
	"bin": true, "debug": true, "dev": true, "devdoc": true, "devman": true,
	"dist": true, "doc": true, "info": true, "lib": true, "man": true,
	"modules": true, "out": true, "py": true, "python": true, "static": true,
	"terminfo": true,
}

// StorePath is a parsed store path.
type StorePath struct {
	Hash string
	Name
}

// nixBase32 is the alphabet of store path hashes (no e, o, u, t).
const nixBase32 = "0123456789abcdfghijklmnpqrsvwxyz"

// ParseStorePath strips storeDir and the 32-character hash from a store
// path ("/nix/store/<hash>-openssl-3.0.13") and splits the rest with
// SplitName. An empty storeDir means DefaultStoreDir. Anything that is not
// a top-level store path (a file inside one, another store directory) is an
// error: a diff computed from such input would silently be wrong.
func ParseStorePath(storeDir, p string) (StorePath, error) {
	if storeDir == "" {
		storeDir = DefaultStoreDir
	}
	dir := strings.TrimRight(storeDir, "/") + "/"
	base, ok := strings.CutPrefix(p, dir)
	if !ok {
		return StorePath{}, fmt.Errorf("parse store path %q: not in %s", p, storeDir)
	}
	hash, name, ok := strings.Cut(base, "-")
	if !ok || len(hash) != 32 || strings.Trim(hash, nixBase32) != "" || name == "" || strings.Contains(name, "/") {
		return StorePath{}, fmt.Errorf("parse store path %q: want %s<32-char hash>-<name>", p, dir)
	}
	return StorePath{Hash: hash, Name: SplitName(name)}, nil
}
