package plan

// CompareVersions orders two version strings the way Nix's compareVersions
// does, so that "upgraded" and "downgraded" mean what they mean to
// nix-env: it returns -1 when a sorts before b, 1 when after, 0 when equal.
//
// A version is split into components at '.' and '-' and wherever digits
// meet non-digits ("2.0pre1" is 2, 0, pre, 1). Components compare pairwise,
// a missing component being the empty string:
//   - two numbers compare numerically ("1.10" > "1.9");
//   - a missing component sorts before a number ("1.2" < "1.2.3");
//   - "pre" sorts before everything else ("2.0pre1" < "2.0");
//   - otherwise a number sorts after a word ("2.3a" < "2.3.1");
//   - two words compare bytewise ("1.0" < "1.0a", "alpha" < "beta").
//
// One deliberate difference: Nix parses numeric components into an int and
// treats numbers that overflow it as words, which makes a date-stamped
// "20240101123456" sort before "9". Here numbers of any length compare
// numerically.
func CompareVersions(a, b string) int {
	for a != "" || b != "" {
		var ca, cb string
		ca, a = nextComponent(a)
		cb, b = nextComponent(b)
		if componentLess(ca, cb) {
			return -1
		}
		if componentLess(cb, ca) {
			return 1
		}
	}
	return 0
}

// nextComponent skips separators and returns the next run of digits or
// the next run of non-digit, non-separator bytes.
func nextComponent(s string) (comp, rest string) {
	i := 0
	for i < len(s) && (s[i] == '.' || s[i] == '-') {
		i++
	}
	s = s[i:]
	if s == "" {
		return "", ""
	}
	j := 0
	if isDigit(s[0]) {
		for j < len(s) && isDigit(s[j]) {
			j++
		}
	} else {
		for j < len(s) && !isDigit(s[j]) && s[j] != '.' && s[j] != '-' {
			j++
		}
	}
	return s[:j], s[j:]
}

func componentLess(a, b string) bool {
	an, bn := isNumber(a), isNumber(b)
	switch {
	case an && bn:
		return numberLess(a, b)
	case a == "" && bn:
		return true
	case a == "pre" && b != "pre":
		return true
	case b == "pre":
		return false
	case bn:
		return true
	case an:
		return false
	default:
		return a < b
	}
}

func isNumber(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// numberLess compares two digit strings numerically, whatever their length.
func numberLess(a, b string) bool {
	a, b = trimZeros(a), trimZeros(b)
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

func trimZeros(s string) string {
	for len(s) > 1 && s[0] == '0' {
		s = s[1:]
	}
	return s
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
