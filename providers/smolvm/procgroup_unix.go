//go:build unix

package smolvm

import (
	"os/exec"
	"syscall"
)

// ownGroup puts cmd in a process group of its own, so that the terminal's
// Ctrl-C, which bottle-apply handles by letting running steps finish, does
// not kill smolvm in the middle of a create or a delete; cancelling the
// context kills the whole group, helpers smolvm started included.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
