package fleet

import (
	"context"
	"errors"
	"slices"
	"testing"
)

func TestListNames(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"tether.toml": `
[nodes.nas]
tags = ["home", "storage"]
[nodes.frame1]
tags = ["home"]
`})
	ev := &FakeEvaluator{Results: map[string]string{
		// A node name no selection could use is not offered: it would
		// land on a command line.
		dir + "#deploy.nodes": `["frame1", "rpi", "$(reboot)", "-rf"]`,
	}}
	n, err := ListNames(context.Background(), ev, LoadOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"frame1", "nas", "rpi"}; !slices.Equal(n.Nodes, want) {
		t.Errorf("nodes %q, want %q", n.Nodes, want)
	}
	if want := []string{"home", "storage"}; !slices.Equal(n.Tags, want) {
		t.Errorf("tags %q, want %q", n.Tags, want)
	}
	if c := ev.Calls(); len(c) != 1 || c[0].Apply != "builtins.attrNames" {
		t.Errorf("evaluations %+v, want one of the names only", c)
	}
}

func TestListNamesWithoutDeployNodes(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"tether.toml": "[nodes.nas]\n"})
	ev := &FakeEvaluator{Errors: map[string]error{
		dir + "#deploy.nodes": errors.New("error: flake 'path:x' does not provide attribute 'deploy'"),
	}}
	n, err := ListNames(context.Background(), ev, LoadOptions{Dir: dir})
	if err != nil || !slices.Equal(n.Nodes, []string{"nas"}) {
		t.Errorf("ListNames = %+v, %v; want nas from tether.toml", n, err)
	}
}
