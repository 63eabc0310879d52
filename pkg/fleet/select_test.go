package fleet

import (
	"strings"
	"testing"
)

func TestSelect(t *testing.T) {
	f := &Fleet{Nodes: map[string]*Node{}}
	for _, n := range []*Node{
		{Name: "frame1", Tags: []string{"builder", "lan"}, Wave: 0},
		{Name: "rpi-kitchen", Tags: []string{"lan", "pi"}, Wave: 2},
		{Name: "rpi-garage", Tags: []string{"lan", "pi"}, Wave: 1},
		{Name: "web", Tags: []string{"public"}, Wave: 1},
		{Name: "web2", Wave: 1},
	} {
		f.Nodes[n.Name] = n
	}
	tests := []struct {
		args []string
		want string // node names in order, or the error's substrings joined by |
		err  bool
	}{
		{args: nil, want: "frame1 rpi-garage web web2 rpi-kitchen"},
		{args: []string{}, want: "frame1 rpi-garage web web2 rpi-kitchen"},
		{args: []string{"web"}, want: "web"},
		{args: []string{"rpi-kitchen", "frame1"}, want: "frame1 rpi-kitchen"},
		{args: []string{"@pi"}, want: "rpi-garage rpi-kitchen"},
		{args: []string{"rpi-*", "@lan"}, want: "frame1 rpi-garage rpi-kitchen"},
		{args: []string{"web?"}, want: "web2"},
		{args: []string{"web[0-9]", "web"}, want: "web web2"},
		{args: []string{"frame1,web", " @pi "}, want: "frame1 rpi-garage web rpi-kitchen"},
		{args: []string{"frame1", "frame1", "@builder"}, want: "frame1"},
		{args: []string{"frme1"}, err: true, want: `unknown node "frme1" (nodes: frame1, rpi-garage, rpi-kitchen, web, web2)`},
		{args: []string{"@nope"}, err: true, want: `no node has tag "nope" (tags: builder, lan, pi, public)`},
		{args: []string{"db-*"}, err: true, want: `pattern "db-*" matches no node`},
		{args: []string{"web["}, err: true, want: `bad node pattern "web["`},
		{args: []string{"web", "x", "@y"}, err: true, want: `unknown node "x"|no node has tag "y"`},
	}
	for _, tt := range tests {
		got, err := Select(f, tt.args)
		if tt.err {
			if err == nil {
				t.Errorf("Select(%q) = %v, want an error", tt.args, got)
				continue
			}
			for _, w := range strings.Split(tt.want, "|") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Select(%q) error = %v, want it to contain %q", tt.args, err, w)
				}
			}
			continue
		}
		if err != nil {
			t.Errorf("Select(%q): %v", tt.args, err)
			continue
		}
		var names []string
		for _, n := range got {
			names = append(names, n.Name)
		}
		if s := strings.Join(names, " "); s != tt.want {
			t.Errorf("Select(%q) = %s, want %s", tt.args, s, tt.want)
		}
	}
}

func TestSelectEmptyFleet(t *testing.T) {
	got, err := Select(&Fleet{}, nil)
	if err != nil || len(got) != 0 {
		t.Errorf("Select on an empty fleet = %v, %v", got, err)
	}
	if _, err := Select(&Fleet{}, []string{"a"}); err == nil || !strings.Contains(err.Error(), "(nodes: none)") {
		t.Errorf("err = %v", err)
	}
}
