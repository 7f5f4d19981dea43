//go:build !linux

package chserver

import "os/exec"

func setProcAttrs(cmd *exec.Cmd) {}

func killGroup(cmd *exec.Cmd) { _ = cmd.Process.Kill() }
