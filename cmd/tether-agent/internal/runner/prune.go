package runner

import (
	"os"
	"path/filepath"
	"sort"

	"github.com/tetherdeploy/tether/pkg/agent"
)

// KeepDeploys is how many deploy dirs (event logs, agent logs) a machine
// keeps; older ones are removed by the next deploy that holds the lock.
const KeepDeploys = 20

// pruneDeployDirs removes all but the newest keep deploy dirs of stateDir,
// never current. Only directories named like a deploy id that hold an
// event log are considered: nothing else in the state dir is touched.
func pruneDeployDirs(stateDir, current string, keep int) []error {
	entries, err := os.ReadDir(stateDir)
	if err != nil {
		return []error{err}
	}
	type dep struct {
		path string
		mod  int64
	}
	var deps []dep
	for _, e := range entries {
		if !e.IsDir() || !agent.ValidDeployID(e.Name()) {
			continue
		}
		p := filepath.Join(stateDir, e.Name())
		if p == filepath.Clean(current) {
			continue
		}
		st, err := os.Lstat(filepath.Join(p, eventsFile))
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		deps = append(deps, dep{p, st.ModTime().UnixNano()})
	}
	if len(deps) < keep {
		return nil
	}
	sort.Slice(deps, func(i, j int) bool { return deps[i].mod > deps[j].mod })
	var errs []error
	// current counts as one of the kept.
	for _, d := range deps[keep-1:] {
		if err := os.RemoveAll(d.path); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}
