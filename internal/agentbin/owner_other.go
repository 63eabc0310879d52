//go:build !unix

package agentbin

import (
	"errors"
	"io/fs"
)

// ownedByMe cannot check ownership here, so it refuses: pass --agents-dir.
func ownedByMe(fs.FileInfo) error {
	return errors.New("cannot tell who owns it on this system")
}
