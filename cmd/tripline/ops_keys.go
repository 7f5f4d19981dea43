package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/tripline/tripline/pipeline/enforce"
)

func newKeysCmd(a *app) *cobra.Command {
	c := &cobra.Command{
		Use:   "keys",
		Short: "Manage the Ed25519 keys that sign revocations",
		Long: `Every revocation, hold and lift is signed with an Ed25519 key, and
enforcers apply only commands signed by a key they trust. The engine signs
with its key (signing.key_file in the config); each analyst who revokes or
lifts by hand signs with a key of their own. Enforcers are given the public
halves (the .pub files).`,
		Example: `  tripline keys generate /etc/tripline/engine.key
  tripline keys generate ~/.tripline/alice.key`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	c.AddCommand(newKeysGenerateCmd(a))
	return c
}

func newKeysGenerateCmd(a *app) *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "generate FILE",
		Short: "Generate a signing key pair",
		Long: `Generate writes a new Ed25519 key pair: the private key to FILE (mode
0600; keep it secret) and the public key to FILE.pub (give it to the
enforcers). It prints the key id, which every command signed with the key
carries.

It refuses to replace an existing key unless --force is given: commands
signed with the old key stop verifying wherever the old .pub is replaced.`,
		Example: `  tripline keys generate engine.key
  tripline keys generate ~/.tripline/alice.key --force`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error { return a.opsKeysGenerate(argv[0], force) },
	}
	c.Flags().BoolVar(&force, "force", false, "replace FILE and FILE.pub if they exist")
	return c
}

func (a *app) opsKeysGenerate(path string, force bool) error {
	for _, p := range []string{path, path + ".pub"} {
		_, err := os.Lstat(p)
		switch {
		case err == nil && !force:
			return fmt.Errorf("%s exists: use --force to replace it (commands signed with the old key will no longer verify)", p)
		case err == nil:
			// remove rather than overwrite, so the new file gets mode 0600
			if err := os.Remove(p); err != nil {
				return err
			}
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
	}
	_, priv, err := enforce.GenerateKey()
	if err != nil {
		return err
	}
	if err := enforce.WriteKeyPair(path, priv); err != nil {
		return fmt.Errorf("write key pair: %w", err)
	}
	id := enforce.NewSigner(priv).KeyID
	fmt.Fprintln(a.stdout, id)
	fmt.Fprintf(a.stderr, "wrote %s (private, mode 0600: keep it secret) and %s.pub (public: give it to enforcers)\n", path, path)
	return nil
}
