//go:build unix

package agentbin

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// ownedByMe refuses a file that another user owns.
func ownedByMe(fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("cannot tell who owns it")
	}
	if me := os.Geteuid(); int(st.Uid) != me {
		return fmt.Errorf("it belongs to uid %d, not to you (uid %d)", st.Uid, me)
	}
	return nil
}
