package main

import (
	"github.com/spf13/cobra"

	"github.com/bottle-apply/bottle-apply/app"
	"github.com/bottle-apply/bottle-apply/view"
)

// logsCommand prints a bottle's egress decisions: what its agent tried to
// reach, and what the bundle let through.
func logsCommand(o *app.Options) *cobra.Command {
	var follow, denied bool
	c := &cobra.Command{
		Use:               "logs [-f] [--denied] NAME",
		Short:             "Print what a bottle's agent tried to reach, and whether its bundle let it (egress and DNS decisions)",
		ValidArgsFunction: completeBottles(o, "", false),
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError("logs takes the bottle's name: bottle-apply logs [-f] NAME")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			rc, err := app.Logs(cmd.Context(), o, args[0], follow)
			if err != nil {
				return err
			}
			defer rc.Close()
			err = view.Decisions(cmd.OutOrStdout(), rc, o.Output == "json", denied)
			if cmd.Context().Err() != nil {
				return nil // Ctrl-C ends -f: not an error
			}
			return err
		},
	}
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing decisions as they are made (until Ctrl-C)")
	c.Flags().BoolVar(&denied, "denied", false, "print denials only")
	return c
}
