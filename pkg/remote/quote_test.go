package remote

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestQuote(t *testing.T) {
	tests := []struct {
		argv []string
		want string
	}{
		{[]string{"nix-store", "--realise", "/nix/store/abc-x.drv"}, "nix-store --realise /nix/store/abc-x.drv"},
		{[]string{""}, "''"},
		{[]string{"a b"}, "'a b'"},
		{[]string{"it's"}, `'it'\''s'`},
		{[]string{"$(reboot)"}, "'$(reboot)'"},
		{[]string{"FOO=bar", "x"}, "'FOO=bar' x"},
		{[]string{"~root"}, "'~root'"},
		{[]string{"*"}, "'*'"},
		{[]string{"user@host:22", "a,b", "-x", "+1"}, "user@host:22 a,b -x +1"},
	}
	for _, tt := range tests {
		if got := Quote(tt.argv); got != tt.want {
			t.Errorf("Quote(%q) = %s, want %s", tt.argv, got, tt.want)
		}
	}
}

func TestCheckArgv(t *testing.T) {
	if err := CheckArgv([]string{"echo", "a\x00b"}); !errors.Is(err, ErrNUL) {
		t.Errorf("CheckArgv with NUL = %v, want ErrNUL", err)
	}
	if err := CheckArgv(nil); err == nil {
		t.Error("CheckArgv(nil) accepted an empty command")
	}
	if err := CheckArgv([]string{"", "'", "\n"}); err != nil {
		t.Errorf("CheckArgv refused NUL-free argv: %v", err)
	}
}

// shells are the POSIX shells a node's login shell may be; each present one
// must parse Quote's output back into the same words.
func shells(t testing.TB) []string {
	var out []string
	for _, sh := range []string{"/bin/sh", "/bin/bash", "/bin/dash"} {
		if _, err := os.Stat(sh); err == nil {
			out = append(out, sh)
		}
	}
	if len(out) == 0 {
		t.Skip("no POSIX shell at /bin/sh")
	}
	return out
}

// roundTrip runs printf through a shell with Quote(args) as its arguments and
// returns the words the shell passed on.
func roundTrip(t testing.TB, sh string, args []string) []string {
	t.Helper()
	script := `printf '%s\0' ` + Quote(args)
	out, err := exec.Command(sh, "-c", script).Output()
	if err != nil {
		t.Fatalf("%s -c %q: %v", sh, script, err)
	}
	if len(out) == 0 || out[len(out)-1] != 0 {
		t.Fatalf("%s -c %q: output %q does not end in NUL", sh, script, out)
	}
	return strings.Split(string(out[:len(out)-1]), "\x00")
}

// FuzzQuote proves that no string escapes its word: whatever three arguments
// are quoted, the shell hands exactly those three back. Arguments with a NUL
// cannot reach a program at all; for them the check is that Run refuses them.
func FuzzQuote(f *testing.F) {
	seeds := [][3]string{
		{"", "", ""},
		{"plain", "with space", "tab\there"},
		{"'", `'\''`, `"'"`},
		{"; reboot", "&& rm -rf /", "| cat /etc/shadow"},
		{"$(id)", "`id`", "${HOME}"},
		{"line\nbreak", "\r\n", "\\"},
		{"*", "?", "[a-z]"},
		{"-rf", "--", "-"},
		{"a\x00b", "x", "y"},
		{"~", "~root", "#comment"},
		{"FOO=bar", "!!", "{a,b}"},
		{"\xff\xfe", "é", "%s%n"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1], s[2])
	}
	sh := shells(f)
	f.Fuzz(func(t *testing.T, a, b, c string) {
		args := []string{a, b, c}
		if strings.Contains(a+b+c, "\x00") {
			if err := CheckArgv(args); !errors.Is(err, ErrNUL) {
				t.Fatalf("CheckArgv(%q) = %v, want ErrNUL", args, err)
			}
			if _, err := commandLine(Cmd{Argv: args}); !errors.Is(err, ErrNUL) {
				t.Fatalf("commandLine(%q) = %v, want ErrNUL", args, err)
			}
			return
		}
		for _, s := range sh {
			got := roundTrip(t, s, args)
			if len(got) != len(args) {
				t.Fatalf("%s: %q came back as %d words %q", s, args, len(got), got)
			}
			for i := range args {
				if !bytes.Equal([]byte(got[i]), []byte(args[i])) {
					t.Fatalf("%s: argument %d %q came back as %q", s, i, args[i], got[i])
				}
			}
		}
	})
}
