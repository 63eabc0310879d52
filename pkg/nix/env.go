package nix

import (
	"strings"
)

// The environment nix runs with. In CI, tether's own environment holds the
// deploy key and a token (INPUT_*, GITHUB_TOKEN, TETHER_SSH_KEY) and the
// runner's credentials (ACTIONS_*), while nix evaluates and builds code
// from a pull request. Whatever nix's environment holds, that code can
// reach: a fixed-output derivation lists impureEnvVars that a nix
// without a daemon copies from its own environment into a build that has
// the network, and an impure evaluation reads any variable with getEnv.
//
// So nix gets an allowlist, not a denylist: a denylist misses the secret
// nobody thought of (a cloud key a previous step exported), an allowlist
// at worst misses a setting, which shows as a plain failure. What nix
// needs is small and known: where it and its tools are, who and where the
// user is, its own settings, certificates, proxies and the locale. A
// credential nix itself needs (an access token for private inputs) goes
// in NIX_CONFIG or nix.conf, which nix reads and a build does not.

// environNames are the variables nix and the tools it runs need.
var environNames = map[string]bool{
	"PATH": true, "HOME": true, "USER": true, "LOGNAME": true,
	"TMPDIR": true, "TMP": true, "TEMP": true, "TEMPDIR": true,
	"TZ": true, "LANG": true, "LANGUAGE": true, "LOCALE_ARCHIVE": true,
	"TERM": true, "NO_COLOR": true,
	"SSL_CERT_FILE": true, "SSL_CERT_DIR": true, "CURL_CA_BUNDLE": true, "GIT_SSL_CAINFO": true,
	// ssh:// stores, remote builders and git+ssh inputs use the agent;
	// the socket lends signatures, never the key, and no build sandbox
	// can reach it.
	"SSH_AUTH_SOCK": true,
	"http_proxy":    true, "https_proxy": true, "ftp_proxy": true, "all_proxy": true, "no_proxy": true,
	"HTTP_PROXY": true, "HTTPS_PROXY": true, "FTP_PROXY": true, "ALL_PROXY": true, "NO_PROXY": true,
	"XDG_CACHE_HOME": true, "XDG_CONFIG_HOME": true, "XDG_CONFIG_DIRS": true, "XDG_DATA_HOME": true,
	"XDG_DATA_DIRS": true, "XDG_STATE_HOME": true, "XDG_RUNTIME_DIR": true,
}

// environPrefixes are families of variables nix reads: its own settings
// (NIX_CONFIG, NIX_PATH, NIX_REMOTE, NIX_SSL_CERT_FILE, ...) and the
// locale's categories.
var environPrefixes = []string{"NIX_", "LC_"}

// secretWords mark a name as holding a credential; such a variable is
// left out even under an allowed prefix (a NIX_GITHUB_TOKEN is no setting
// of nix's).
var secretWords = []string{"TOKEN", "SECRET", "PASSW", "CREDENTIAL", "PRIVATE", "API_KEY", "ACCESS_KEY"}

// Environ is the environment nix runs with, taken from environ (a
// process's, as "KEY=value"): only the variables nix needs, none whose
// name says it holds a credential. Local uses it when no Env is given.
func Environ(environ []string) []string {
	// Never nil: to os/exec a nil environment means all of this one.
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		name, _, ok := strings.Cut(kv, "=")
		if ok && needed(name) {
			out = append(out, kv)
		}
	}
	return out
}

func needed(name string) bool {
	upper := strings.ToUpper(name)
	for _, w := range secretWords {
		if strings.Contains(upper, w) {
			return false
		}
	}
	if environNames[name] {
		return true
	}
	for _, p := range environPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
