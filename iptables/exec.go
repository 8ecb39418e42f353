package iptables

import "github.com/portstripe/portstripe/internal/sysexec"

// The command layer is shared with the nftables backend (internal/sysexec).
type (
	// Command is one program run: what iptables-restore, iptables-save
	// and ip are asked to do.
	Command = sysexec.Command
	// Runner runs commands. OS runs them for real; tests swap in a recorder.
	Runner = sysexec.Runner
	// OS runs commands on this machine.
	OS = sysexec.OS
	// ExecError is a command that failed.
	ExecError = sysexec.ExecError
)

// InNetns runs f on an OS thread inside the named network namespace
// (sysexec.InNetns).
var InNetns = sysexec.InNetns

// inNetns prefixes a command so it runs in the named network namespace
// (none: unchanged).
func inNetns(netns string, c Command) Command { return c.In(netns) }

// isRoot reports whether this process may create network namespaces.
var isRoot = sysexec.IsRoot
