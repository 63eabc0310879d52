package fleet

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// ConfigError is a mistake in the fleet configuration, located so the user
// can go and fix it: file and line, the node, and the key.
type ConfigError struct {
	// File is relative to the flake directory when it lies inside it; ""
	// when the place is only known by its key.
	File string
	Line int
	// Node is the node concerned, "" for fleet-wide keys.
	Node string
	// Key is the offending key, relative to the node when Node is set
	// (e.g. "jump", "profiles.system.sshUser").
	Key string
	Err error
}

func (e *ConfigError) Error() string {
	s := ""
	if e.File != "" {
		s = e.File
		if e.Line > 0 {
			s = fmt.Sprintf("%s:%d", s, e.Line)
		}
		s += ": "
	}
	if e.Node != "" {
		s += "node " + e.Node + ": "
	}
	if e.Key != "" {
		s += e.Key + ": "
	}
	return s + e.Err.Error()
}

func (e *ConfigError) Unwrap() error { return e.Err }

// errorList collects configuration errors so a user sees all of them at
// once, in file order.
type errorList []*ConfigError

func (l *errorList) add(at Origin, node, key string, format string, args ...any) {
	if at.File == "" && at.Key != "" {
		// Without a file position, the full key is the best address.
		key = at.Key
	}
	*l = append(*l, &ConfigError{File: at.File, Line: at.Line, Node: node, Key: key, Err: fmt.Errorf(format, args...)})
}

func (l errorList) err() error {
	if len(l) == 0 {
		return nil
	}
	sorted := slices.Clone(l)
	// Located errors first, in file order; the others keep their order.
	slices.SortStableFunc(sorted, func(a, b *ConfigError) int {
		if (a.File == "") != (b.File == "") {
			if a.File == "" {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
	})
	errs := make([]error, len(sorted))
	for i, e := range sorted {
		errs[i] = e
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}
