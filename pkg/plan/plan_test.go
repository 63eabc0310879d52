package plan

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"sort"
	"testing"
	"time"
)

func TestForNode(t *testing.T) {
	cur := closure(p("nixos-system-a-24.05.1", 10), p("hello-2.12", 100))
	next := closure(p("nixos-system-a-24.05.2", 10), p("hello-2.13", 100))
	curSys, nextSys := cur[0].Path, next[0].Path

	tests := []struct {
		name       string
		in         NodeInput
		wantStatus Status
		wantErr    bool
		wantAdded  int
		wantUp     int
	}{
		{"changes", NodeInput{Node: "a", CurrentSystem: curSys, CurrentClosure: cur, NewSystem: nextSys, NewClosure: next}, StatusOK, false, 0, 2},
		{"already deployed", NodeInput{Node: "a", CurrentSystem: curSys, CurrentClosure: cur, NewSystem: curSys, NewClosure: cur}, StatusNoChanges, false, 0, 0},
		{"never deployed", NodeInput{Node: "a", NewSystem: nextSys, NewClosure: next}, StatusFresh, false, 2, 0},
		// A stale closure passed with no current system is ignored.
		{"fresh ignores a current closure", NodeInput{Node: "a", CurrentClosure: cur, NewSystem: nextSys, NewClosure: next}, StatusFresh, false, 2, 0},
		{"bad path", NodeInput{Node: "a", CurrentSystem: curSys, CurrentClosure: []Path{{"/tmp/x", 1}}, NewSystem: nextSys, NewClosure: next}, StatusError, true, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ForNode(tt.in)
			if got.Status != tt.wantStatus || got.Node != "a" {
				t.Fatalf("ForNode: node %q status %q, want a %q (error %q)", got.Node, got.Status, tt.wantStatus, got.Error)
			}
			if tt.wantErr {
				if got.Error == "" || got.Diff != nil {
					t.Errorf("ForNode: Error=%q Diff=%v, want an error and no diff", got.Error, got.Diff)
				}
				return
			}
			if got.Diff == nil {
				t.Fatal("ForNode: no diff")
			}
			if n := got.Diff.Count(Added); n != tt.wantAdded {
				t.Errorf("added = %d, want %d", n, tt.wantAdded)
			}
			if n := got.Diff.Count(Upgraded); n != tt.wantUp {
				t.Errorf("upgraded = %d, want %d", n, tt.wantUp)
			}
		})
	}
}

func TestNewSortsNodes(t *testing.T) {
	gen := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	pl := New("github:o/r", "abc", gen, []NodePlan{
		Unreachable("web", "", errors.New("dial: timeout")),
		Failed("build", errors.New("nix build failed")),
		{Node: "frame1", Status: StatusNoChanges},
	})
	var names []string
	for _, n := range pl.Nodes {
		names = append(names, n.Node)
	}
	if !slices.Equal(names, []string{"build", "frame1", "web"}) {
		t.Errorf("nodes = %v, want sorted", names)
	}
	if pl.SchemaVersion != SchemaVersion || pl.Nodes[2].Status != StatusUnreachable || pl.Nodes[2].Error != "dial: timeout" {
		t.Errorf("plan = %+v", pl)
	}
}

// TestJSONFieldNames pins the JSON keys documented in docs/plan-json.md:
// renaming a Go field must not silently change the contract.
func TestJSONFieldNames(t *testing.T) {
	np := NodePlan{
		Node: "a", Status: StatusOK, CurrentSystem: "c", NewSystem: "n", Error: "e", RebootFor: []string{"kernel"},
		Diff: &Diff{Packages: []Package{{Name: "x", Kind: Upgraded, Before: []string{"1"}, After: []string{"2"}}}},
		DryActivate: &DryActivate{
			Stop: []string{"a"}, NotStopped: []string{"a"}, Reload: []string{"a"}, Restart: []string{"a"},
			Start: []string{"a"}, StopSwap: []string{"a"}, Other: []string{"a"}, Error: "e",
		},
	}
	pl := New("f", "c", time.Unix(0, 0).UTC(), []NodePlan{np})
	b, err := json.Marshal(pl)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	node := doc["nodes"].([]any)[0].(map[string]any)
	diff := node["diff"].(map[string]any)
	checks := []struct {
		what string
		obj  any
		want []string
	}{
		{"plan", doc, []string{"commit", "flakeRef", "generated", "nodes", "schemaVersion"}},
		{"node", node, []string{"currentSystem", "diff", "dryActivate", "error", "newSystem", "node", "rebootFor", "status"}},
		{"diff", diff, []string{"after", "before", "packages", "rebuilt"}},
		{"totals", diff["before"], []string{"bytes", "paths"}},
		{"package", diff["packages"].([]any)[0], []string{"after", "before", "kind", "name", "sizeAfter", "sizeBefore", "sizeDelta"}},
		{"dryActivate", node["dryActivate"], []string{"error", "notStopped", "other", "rebootRequired", "reload", "restart", "restartSystemd", "start", "stop", "stopSwap"}},
	}
	for _, c := range checks {
		var keys []string
		for k := range c.obj.(map[string]any) {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if !slices.Equal(keys, c.want) {
			t.Errorf("%s JSON keys = %v, want %v", c.what, keys, c.want)
		}
	}
}

func TestRebootFor(t *testing.T) {
	booted := map[string]string{"kernel": "/nix/store/k1-linux-6.6.1/bzImage", "initrd": "/nix/store/i1/initrd",
		"kernel-modules": "/nix/store/m1/lib", "systemd": "/nix/store/s1-systemd-255"}
	with := func(name, target string) map[string]string {
		m := maps.Clone(booted)
		m[name] = target
		return m
	}
	tests := []struct {
		name         string
		booted, next map[string]string
		want         []string
	}{
		{"nothing differs", booted, maps.Clone(booted), nil},
		{"a new kernel", booted, with("kernel", "/nix/store/k2-linux-6.6.2/bzImage"), []string{"kernel"}},
		{"a new systemd", booted, with("systemd", "/nix/store/s2-systemd-256"), []string{"systemd"}},
		{"the new system has no initrd", booted, with("initrd", ""), []string{"initrd"}},
		{"booted system unknown", nil, booted, nil},
	}
	for _, tc := range tests {
		if got := RebootFor(tc.booted, tc.next); !slices.Equal(got, tc.want) {
			t.Errorf("%s: RebootFor = %q, want %q", tc.name, got, tc.want)
		}
	}
	np := ForNode(NodeInput{Node: "a", CurrentSystem: "/nix/store/c-a", NewSystem: "/nix/store/n-a",
		BootedLinks: booted, NewLinks: with("kernel-modules", "/nix/store/m2/lib")})
	if !slices.Equal(np.RebootFor, []string{"kernel-modules"}) {
		t.Errorf("ForNode RebootFor = %q", np.RebootFor)
	}
}
