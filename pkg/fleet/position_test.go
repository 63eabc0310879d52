package fleet

import (
	"testing"

	"github.com/BurntSushi/toml"
)

func TestScanKeyLines(t *testing.T) {
	src := `# comment with key = "value"
known_hosts = "a" # trailing

[defaults]
ssh_user = "root"
text = """
not_a_key = 1
"""
lit = '''
[nodes.fake]
'''

[nodes.frame1]
tags = [
  "a", # comment
  "b",
]
inline = { x = 1, y = { z = "}" } }
dotted . key = 2
"quoted.name" = 3

[nodes."my.host"]
hostname = 'h'

[[nodes.web.health]]
http = "http://x"

[[nodes.web.health]]
command = ["true"]
`
	kl := scanKeyLines(src)
	tests := []struct {
		key  toml.Key
		line int
	}{
		{toml.Key{"known_hosts"}, 2},
		{toml.Key{"defaults"}, 4},
		{toml.Key{"defaults", "ssh_user"}, 5},
		{toml.Key{"defaults", "text"}, 6},
		{toml.Key{"defaults", "not_a_key"}, 4}, // inside a string: falls back to the table
		{toml.Key{"nodes", "fake"}, 13},        // inside a string: only "nodes" is written
		{toml.Key{"defaults", "lit"}, 9},
		{toml.Key{"nodes", "frame1"}, 13},
		{toml.Key{"nodes", "frame1", "tags"}, 14},
		{toml.Key{"nodes", "frame1", "inline"}, 18},
		{toml.Key{"nodes", "frame1", "inline", "y", "z"}, 18},
		{toml.Key{"nodes", "frame1", "dotted", "key"}, 19},
		{toml.Key{"nodes", "frame1", "quoted.name"}, 20},
		{toml.Key{"nodes", "my.host", "hostname"}, 23},
		{toml.Key{"nodes", "web", "health", "http"}, 26},
		{toml.Key{"nodes", "web", "health", "command"}, 29},
		{toml.Key{"nodes", "frame1", "unknown"}, 13}, // closest written parent
	}
	for _, tt := range tests {
		if got := kl.line(tt.key); got != tt.line {
			t.Errorf("line(%s) = %d, want %d", tt.key, got, tt.line)
		}
	}
	for i, want := range []int{25, 28} {
		if got := kl.element(toml.Key{"nodes", "web", "health"}, i); got != want {
			t.Errorf("element(health, %d) = %d, want %d", i, got, want)
		}
	}
}

// The scanner must end on any input, even input the decoder refuses.
func TestScanKeyLinesTerminates(t *testing.T) {
	for _, src := range []string{"", "[", "[[", "a", "a =", `a = "`, "a = '''", "a = [", "a = {", "]", "}", "= =", "a.=.b", "\"\\", "[a.\"b"} {
		scanKeyLines(src)
	}
}

func FuzzScanKeyLines(f *testing.F) {
	f.Add("[nodes.a]\nx = [1, {y = 2}]\n")
	f.Fuzz(func(t *testing.T, src string) { scanKeyLines(src) })
}
