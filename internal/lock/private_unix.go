//go:build unix

package lock

import (
	"fmt"
	"os"
	"syscall"
)

// checkPrivate refuses a lock directory that is a symbolic link, or that
// another user owns or may write to: in a shared place such as /tmp, such
// a directory could send the pid written into a lock file onto a file of
// the user's own.
func checkPrivate(dir string) error {
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	switch {
	case st.Mode()&os.ModeSymlink != 0:
		return fmt.Errorf("lock directory %s is a symbolic link; remove it, or set XDG_STATE_HOME to a directory of your own", dir)
	case !st.IsDir():
		return fmt.Errorf("lock directory %s is not a directory; remove it, or set XDG_STATE_HOME to a directory of your own", dir)
	case ok && int(sys.Uid) != os.Geteuid():
		return fmt.Errorf("lock directory %s belongs to uid %d, not to you (uid %d); remove it, or set XDG_STATE_HOME to a directory of your own", dir, sys.Uid, os.Geteuid())
	case st.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("lock directory %s is writable by others (mode %s); chmod go-w it, or set XDG_STATE_HOME to a directory of your own", dir, st.Mode().Perm())
	}
	return nil
}
