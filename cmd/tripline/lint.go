package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newLintCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "lint PATH...",
		Short: "Check rule files for errors",
		Long: `Lint decodes rule files strictly, validates every rule and compiles every
condition, match and filter against the event's fields. It prints every
error found as file:line:col: message and exits with status 1 if there is
any; otherwise it prints the number of rules and tests and the set's hash.`,
		Example: `  tripline rules lint rules/
  tripline rules lint rules/volume.yaml rules/sequences.yaml`,
		Args: args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, paths []string) error {
			set, err := a.loadRules(paths)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "%d rules, %d tests OK (set %s)\n", len(set.Rules), len(set.Tests), set.Hash)
			return err
		},
	}
}
