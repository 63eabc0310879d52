package remote

import (
	"errors"
	"fmt"
	"strings"
)

// Quote turns argv into one POSIX shell command line in which every element
// stays exactly one word: no expansion, no globbing, no command separators.
//
// It is the only place in tether where shell lines are built. An SSH exec
// request carries a single string that the remote login shell parses, so argv
// cannot be passed as-is; a hostile node name, path or host key alias must
// never become shell syntax on the far side.
//
// Words made only of characters no POSIX shell treats specially are left bare
// so logs stay readable; everything else is single-quoted, and an embedded
// single quote closes the quote, adds an escaped one and reopens:
//
//	[]string{"echo", "it's $HOME"}  ->  echo 'it'\''s $HOME'
//
// The login shell on the far side must be a POSIX-style shell (sh, bash,
// dash, zsh); csh and fish parse some quoted strings differently.
//
// A NUL byte cannot be carried in an exec'd argument at all. Quote does not
// fail on it (its result would still keep the NUL inside single quotes, so a
// shell that truncates at the NUL sees an unterminated quote and runs
// nothing), but Client.Run refuses such argv up front: see CheckArgv.
func Quote(argv []string) string {
	var b strings.Builder
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		quoteWord(&b, a)
	}
	return b.String()
}

func quoteWord(b *strings.Builder, s string) {
	if s != "" && isBare(s) {
		b.WriteString(s)
		return
	}
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			b.WriteString(`'\''`)
			continue
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('\'')
}

// isBare reports whether s can appear unquoted. '=' is excluded because a
// leading NAME=value word is an assignment, not a command; '~', '%', '#',
// '{', '^' and '!' are excluded because some shell expands or treats them
// specially at the start of a word.
func isBare(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("_-./:@,+", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// ErrNUL is returned (wrapped) for a command argument containing a NUL byte,
// which no exec'd program can receive.
var ErrNUL = errors.New("argument contains a NUL byte")

// CheckArgv reports whether argv can be run remotely: it must be non-empty
// and no element may contain a NUL byte.
func CheckArgv(argv []string) error {
	if len(argv) == 0 {
		return errors.New("empty command")
	}
	for i, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("argv[%d] %q: %w", i, a, ErrNUL)
		}
	}
	return nil
}
