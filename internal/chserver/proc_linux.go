package chserver

import (
	"os/exec"
	"syscall"
)

// setProcAttrs puts the child in its own process group and has the kernel
// kill it if Tripline dies, so no server is left behind.
func setProcAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func killGroup(cmd *exec.Cmd) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}
