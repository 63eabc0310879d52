package runner

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestPruneDeployDirsKeepsTheNewest(t *testing.T) {
	state := t.TempDir()
	base := time.Now().Add(-time.Hour)
	mk := func(name string, age int) string {
		d := filepath.Join(state, name)
		os.Mkdir(d, 0o700)
		f := filepath.Join(d, eventsFile)
		os.WriteFile(f, []byte("{}\n"), 0o600)
		ts := base.Add(time.Duration(age) * time.Minute)
		os.Chtimes(f, ts, ts)
		return d
	}
	var dirs []string
	for i := 0; i < 8; i++ {
		dirs = append(dirs, mk(fmt.Sprintf("d-%d", i), i)) // d-7 newest
	}
	current := mk("current", -10) // oldest mtime, but running now
	os.Mkdir(filepath.Join(state, "not-a-deploy"), 0o700)
	os.WriteFile(filepath.Join(state, "agent-abc"), []byte("bin"), 0o700)
	os.Mkdir(filepath.Join(state, "UPPER"), 0o700)

	if errs := pruneDeployDirs(state, current, 4); len(errs) > 0 {
		t.Fatal(errs)
	}
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	for i, d := range dirs {
		if want := i >= 5; exists(d) != want {
			t.Errorf("%s exists=%v, want %v (keep the current and the 3 newest)", filepath.Base(d), exists(d), want)
		}
	}
	for _, p := range []string{current, filepath.Join(state, "not-a-deploy"), filepath.Join(state, "agent-abc"), filepath.Join(state, "UPPER")} {
		if !exists(p) {
			t.Errorf("%s was removed", filepath.Base(p))
		}
	}
}
