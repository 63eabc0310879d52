package fleet

import (
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// keyLines locates keys in a TOML document. The decoder keeps positions to
// itself and reports none for keys it did not decode, yet every unknown key
// must be reported with its line; so the document (already known to parse)
// is scanned once more here, lightly, for where each key is written.
type keyLines struct {
	// first line of each key (toml.Key.String() form), including tables
	// and the implicit tables of dotted keys.
	first map[string]int
	// headers holds the line of every `[[array.of.tables]]` header, so the
	// n-th element of an array of tables can be located.
	headers map[string][]int
}

// line returns the line of key, or of its closest written parent, or 0.
func (k keyLines) line(key toml.Key) int {
	for n := len(key); n > 0; n-- {
		if l, ok := k.first[key[:n].String()]; ok {
			return l
		}
	}
	return 0
}

// element returns the line of the i-th `[[key]]` header, falling back to
// the key's first line (inline arrays of tables).
func (k keyLines) element(key toml.Key, i int) int {
	if ls := k.headers[key.String()]; i < len(ls) {
		return ls[i]
	}
	return k.line(key)
}

func scanKeyLines(src string) keyLines {
	s := &tomlScanner{src: src, out: keyLines{first: map[string]int{}, headers: map[string][]int{}}}
	for i := 0; i < len(src); i++ {
		if src[i] == '\n' {
			s.newlines = append(s.newlines, i)
		}
	}
	s.document()
	return s.out
}

type tomlScanner struct {
	src      string
	i        int
	newlines []int
	out      keyLines
}

func (s *tomlScanner) lineAt(off int) int {
	return sort.SearchInts(s.newlines, off) + 1
}

func (s *tomlScanner) peek(prefix string) bool { return strings.HasPrefix(s.src[s.i:], prefix) }

func (s *tomlScanner) eof() bool { return s.i >= len(s.src) }

// skip passes blanks, and with newlines also line breaks and comments.
func (s *tomlScanner) skip(newlines bool) {
	for !s.eof() {
		switch c := s.src[s.i]; {
		case c == ' ' || c == '\t' || c == '\r':
			s.i++
		case newlines && c == '\n':
			s.i++
		case newlines && c == '#':
			for !s.eof() && s.src[s.i] != '\n' {
				s.i++
			}
		default:
			return
		}
	}
}

func (s *tomlScanner) record(key toml.Key, line int) {
	for n := 1; n <= len(key); n++ {
		k := key[:n].String()
		if _, ok := s.out.first[k]; !ok {
			s.out.first[k] = line
		}
	}
}

func (s *tomlScanner) document() {
	var table toml.Key
	for {
		s.skip(true)
		if s.eof() {
			return
		}
		line := s.lineAt(s.i)
		if s.src[s.i] == '[' {
			array := s.peek("[[")
			if array {
				s.i += 2
			} else {
				s.i++
			}
			table = s.key()
			s.skip(false)
			if array {
				s.i += 2
			} else {
				s.i++
			}
			s.record(table, line)
			if array {
				k := table.String()
				s.out.headers[k] = append(s.out.headers[k], line)
			}
			continue
		}
		s.keyValue(table, line)
		// Anything else on the line is a comment or white space.
		for !s.eof() && s.src[s.i] != '\n' {
			s.i++
		}
	}
}

// key reads a possibly dotted key and stops before '=' or ']'.
func (s *tomlScanner) key() toml.Key {
	var key toml.Key
	for {
		s.skip(false)
		if s.eof() {
			return key
		}
		switch s.src[s.i] {
		case '"':
			start := s.i
			s.basicString()
			raw := s.src[start:s.i]
			if u, err := strconv.Unquote(raw); err == nil {
				key = append(key, u)
			} else {
				key = append(key, strings.Trim(raw, `"`))
			}
		case '\'':
			start := s.i
			s.literalString()
			key = append(key, strings.Trim(s.src[start:s.i], "'"))
		default:
			start := s.i
			for !s.eof() && !strings.ContainsRune(" \t\r\n.=]", rune(s.src[s.i])) {
				s.i++
			}
			key = append(key, s.src[start:s.i])
		}
		s.skip(false)
		if s.eof() || s.src[s.i] != '.' {
			return key
		}
		s.i++
	}
}

// items reads the elements of an array or an inline table, from its
// opening bracket to close, each by item; commas, white space and comments
// between them are passed over.
func (s *tomlScanner) items(close byte, item func()) {
	s.i++
	for {
		s.skip(true)
		if s.eof() {
			return
		}
		switch s.src[s.i] {
		case close:
			s.i++
			return
		case ',':
			s.i++
			continue
		}
		item()
	}
}

// keyValue reads `key = value` below table (a table header's key, or an
// inline table's), recording the key's full name at line.
func (s *tomlScanner) keyValue(table toml.Key, line int) {
	full := append(append(toml.Key{}, table...), s.key()...)
	s.record(full, line)
	s.skip(false)
	if !s.eof() && s.src[s.i] == '=' {
		s.i++
	}
	s.value(full)
}

func (s *tomlScanner) value(key toml.Key) {
	s.skip(false)
	if s.eof() {
		return
	}
	switch c := s.src[s.i]; {
	case s.peek(`"""`):
		s.multiline(`"""`, true)
	case s.peek(`'''`):
		s.multiline(`'''`, false)
	case c == '"':
		s.basicString()
	case c == '\'':
		s.literalString()
	case c == '[':
		s.items(']', func() { s.value(key) })
	case c == '{':
		s.items('}', func() { s.keyValue(key, s.lineAt(s.i)) })
	default:
		start := s.i
		for !s.eof() && !strings.ContainsRune(",]}\n#", rune(s.src[s.i])) {
			s.i++
		}
		if s.i == start {
			s.i++ // never loop on input the decoder would have refused
		}
	}
}

func (s *tomlScanner) basicString() {
	defer s.clamp()
	s.i++ // opening quote
	for !s.eof() {
		switch s.src[s.i] {
		case '\\':
			s.i += 2
			continue
		case '"', '\n':
			s.i++
			return
		}
		s.i++
	}
}

// clamp keeps the position inside the input after skipping an escape at
// its very end.
func (s *tomlScanner) clamp() {
	if s.i > len(s.src) {
		s.i = len(s.src)
	}
}

func (s *tomlScanner) literalString() {
	s.i++
	for !s.eof() {
		c := s.src[s.i]
		s.i++
		if c == '\'' || c == '\n' {
			return
		}
	}
}

func (s *tomlScanner) multiline(delim string, escapes bool) {
	defer s.clamp()
	s.i += 3
	for !s.eof() {
		if escapes && s.src[s.i] == '\\' {
			s.i += 2
			continue
		}
		if s.peek(delim) {
			s.i += 3
			// Up to two more quotes belong to the content.
			for n := 0; n < 2 && !s.eof() && s.src[s.i] == delim[0]; n++ {
				s.i++
			}
			return
		}
		s.i++
	}
}
