package main

import "github.com/spf13/cobra"

// extraCommands are constructors of top-level commands defined outside
// root.go; newRootCmd adds one command per entry.
var extraCommands []func(*app) *cobra.Command

// The operator commands: keys, NATS set-up, publishing and simulating
// events, watching revocations and decisions, and the audited analyst
// commands.
func init() {
	extraCommands = append(extraCommands,
		newKeysCmd,
		newNATSCmd,
		newPublishCmd,
		newSimulateCmd,
		newWatchCmd,
		newRevokeCmd,
		newLiftCmd,
		newApproveCmd,
		newDenyCmd,
	)
}
