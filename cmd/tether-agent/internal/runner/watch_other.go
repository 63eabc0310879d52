//go:build !linux

package runner

import (
	"errors"
	"fmt"
)

// watchDir has no watch to offer here: the loops poll.
func watchDir(dir string, names ...string) (*fileWatch, error) {
	return nil, fmt.Errorf("watch %s: %w", dir, errors.ErrUnsupported)
}
