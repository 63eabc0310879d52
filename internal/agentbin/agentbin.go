// Package agentbin finds the tether-agent binaries a deploy uploads to its
// targets, so that a tether installed the ordinary Go way, or built from a
// clone, deploys with no further step.
//
// The first of these wins: an explicit directory (--agents-dir,
// $TETHER_AGENTS_DIR); the agents a release build carries inside (build
// tag tether_embed, see scripts/release.sh); agents/ or
// ../share/tether/agents beside the binary (the Action's and the image's
// layout); else agents built on first use from the module's own source
// with the local Go toolchain.
//
// The agents run as root on every machine of the fleet, so the ones this
// package writes live in a cache directory only the user can touch (each
// level 0700, owned by them, no symlinks), each file named by the SHA-256
// of its content, and the content is checked against that name every time
// the file is handed out: a file that does not match is removed and made
// again, never used.
package agentbin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"

	"github.com/tetherdeploy/tether/pkg/deploy"
)

// Options say where to look and what to tell the user.
type Options struct {
	// Dir is a directory the user named (--agents-dir,
	// $TETHER_AGENTS_DIR); it wins over everything else.
	Dir string
	// Getenv reads the environment: it locates the user's cache directory
	// and the go command, and gives the go command the few variables it
	// needs (goEnvNames). This package reads no environment of its own.
	Getenv func(string) string
	// CacheDir replaces the user's cache directory (tests).
	CacheDir string
	// Log receives one line when agents are built.
	Log io.Writer
}

// Find returns where this tether's agents come from. A build from source
// happens only when Agent asks for an architecture whose agent is not
// cached, and runs under ctx, the context of the command that needs it.
func Find(ctx context.Context, o Options) (deploy.AgentSource, error) {
	exe, _ := os.Executable()
	bi, _ := debug.ReadBuildInfo()
	_, file, _, _ := runtime.Caller(0)
	return find(ctx, o, binary{exe: exe, build: bi, embedded: embeddedAgents(), sourceFile: file})
}

// binary is what the running tether knows about itself.
type binary struct {
	exe      string
	build    *debug.BuildInfo
	embedded fs.FS // tether-agent-linux-<arch>, nil when it carries none
	// sourceFile is this package's source file as the compiler recorded
	// it: an absolute path unless built with -trimpath.
	sourceFile string
}

func find(ctx context.Context, o Options, b binary) (deploy.AgentSource, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Getenv == nil {
		o.Getenv = func(string) string { return "" }
	}
	if o.Dir != "" {
		return &deploy.AgentDir{Dir: o.Dir}, nil
	}
	if b.embedded != nil {
		return openCache(ctx, o, "embedded", embedded{b.embedded})
	}
	if d := besideBinary(b.exe); d != "" {
		return &deploy.AgentDir{Dir: d}, nil
	}
	bld, key, err := newBuilder(o.Getenv, b, o.Log)
	if err != nil {
		return nil, noAgents(err)
	}
	src, err := openCache(ctx, o, key, bld)
	if err != nil {
		return nil, err
	}
	bld.scratch = src.dir
	if bld.goCmd == "" && !src.anyCached() {
		return nil, noAgents(errors.New("there is no go command on PATH"))
	}
	return src, nil
}

// besideBinary finds agents/ beside the tether binary, or
// ../share/tether/agents (an install prefix).
func besideBinary(exe string) string {
	if exe == "" {
		return ""
	}
	base := filepath.Dir(exe)
	for _, d := range []string{filepath.Join(base, "agents"), filepath.Join(base, "..", "share", "tether", "agents")} {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return d
		}
	}
	return ""
}

// noAgents is the one error a user meets when this tether has no agents
// and cannot build them: why, and the three ways out.
func noAgents(why error) error {
	return fmt.Errorf("cannot find the tether agents: this tether carries none and cannot build them (%w); "+
		"to have them built once, on first use, install Go and use a tether that knows its source "+
		"(go install github.com/tetherdeploy/tether/cmd/tether@VERSION, or go build ./cmd/tether in a clone); "+
		"or use the tether of a release archive (it carries them); "+
		"or pass --agents-dir DIR (or set TETHER_AGENTS_DIR) with agents built by scripts/build-agents.sh DIR", why)
}

// userCacheDir is os.UserCacheDir computed through getenv instead of
// from the process environment.
func userCacheDir(getenv func(string) string, goos string) (string, error) {
	home := getenv("HOME")
	switch goos {
	case "darwin", "ios":
		if home == "" {
			return "", errors.New("HOME is not set")
		}
		return filepath.Join(home, "Library", "Caches"), nil
	default:
		if d := getenv("XDG_CACHE_HOME"); filepath.IsAbs(d) {
			return d, nil
		}
		if home == "" {
			return "", errors.New("neither XDG_CACHE_HOME nor HOME is set")
		}
		return filepath.Join(home, ".cache"), nil
	}
}
