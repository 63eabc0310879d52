package runner

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/tetherdeploy/tether/internal/atomicfile"
	"github.com/tetherdeploy/tether/pkg/agent"
)

// writeFileAtomic replaces path with data; a reader sees the old content
// or the new, never a part.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	return atomicfile.WriteFile(path, data, perm)
}

func writeJSONAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'), 0o600)
}

// readFileLimit reads at most max bytes of path.
func readFileLimit(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, max))
}

// ensureStateDir creates the agent's state directory and refuses one that
// someone else could have prepared: it lives under a world-writable temp
// directory and holds the lock and the confirmation files of a root process.
//
// trusted lists owners other than the agent's own user that may own it: the
// user who ran the agent through sudo, who uploaded the agent into that
// directory and may become root anyway.
func ensureStateDir(dir string, trusted []int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return &agent.Error{Code: agent.CodeInternal, Msg: "create state dir " + dir, Err: err}
	}
	return checkPrivateDir(dir, trusted)
}

func checkPrivateDir(dir string, trusted []int) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return &agent.Error{Code: agent.CodeNotFound, Msg: "state dir " + dir + " does not exist", Err: err}
		}
		return &agent.Error{Code: agent.CodeInternal, Msg: "state dir " + dir, Err: err}
	}
	unsafe := func(why string) error {
		return &agent.Error{Code: agent.CodeUnsafeStateDir, Msg: fmt.Sprintf("state dir %s %s; refusing to use it", dir, why)}
	}
	if !fi.IsDir() {
		return unsafe("is not a directory")
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return unsafe(fmt.Sprintf("is writable by others (mode %v)", fi.Mode().Perm()))
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() && !slices.Contains(trusted, int(st.Uid)) {
		return unsafe(fmt.Sprintf("belongs to uid %d, not %d", st.Uid, os.Geteuid()))
	}
	return nil
}

// checkProfileDir refuses a profile in a directory someone the agent does
// not trust could change. Setting the profile and activating it follow the
// profile's links: as root, through a directory alice can write, they
// would run whatever alice points them at between the check and the use.
// Each existing directory above the profile must pass agent.UnsafeDir; one
// that does not exist yet is created later by the agent itself, below one
// that passed.
func checkProfileDir(profile string, trusted []int, trustedAbove string) error {
	owners := append([]int{os.Geteuid()}, trusted...)
	for _, dir := range agent.PathPrefixes(filepath.Dir(profile)) {
		if trustedAbove != "" && strings.HasPrefix(trustedAbove, dir+"/") {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(dir, &st); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return &agent.Error{Code: agent.CodeInternal, Msg: "check profile directory " + dir, Err: err}
		}
		if why := agent.UnsafeDir(int(st.Uid), uint32(st.Mode), owners); why != "" {
			return &agent.Error{Code: agent.CodeUnsafeProfile, Msg: fmt.Sprintf(
				"profile %s: %s %s; the agent runs as uid %d and will not follow it (deploy the profile as the user who owns it)",
				profile, dir, why, os.Geteuid())}
		}
	}
	return nil
}
