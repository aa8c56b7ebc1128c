package main

import (
	"github.com/spf13/cobra"

	"github.com/bottle-apply/bottle-apply/app"
	"github.com/bottle-apply/bottle-apply/view"
)

// bundleCommand groups what concerns the built-in bundle image.
func bundleCommand(o *app.Options) *cobra.Command {
	c := &cobra.Command{
		Use:   "bundle",
		Short: "Work with the built-in bundle image",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError("unknown command " + args[0] + ` for "bottle-apply bundle" (bundle push REF)`)
			}
			return usageError("bundle takes a command: bottle-apply bundle push REF")
		},
		RunE: func(*cobra.Command, []string) error { return nil },
	}
	c.AddCommand(bundlePushCommand(o))
	return c
}

// bundlePushCommand pushes the built-in bundle image to a registry, for a
// cluster to pull.
func bundlePushCommand(o *app.Options) *cobra.Command {
	var po app.PushOptions
	c := &cobra.Command{
		Use:   "push [--insecure] REF",
		Short: "Push the built-in bundle image (one image an architecture, under an index) to a registry; prints the reference to pin in spec.bundle.image",
		Long: "bundle push builds the built-in bundle image of the bottle-bundle builds beside bottle-apply,\n" +
			"one image an architecture under an OCI image index, and pushes it to REF with the docker CLI's\n" +
			"credentials (docker login). A REF without a tag gets the built-in image's tag, which follows\n" +
			"the builds; a tag or a digest is used as given.",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError("bundle push takes the repository to push to: bottle-apply bundle push registry.example.com/team/bundle")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := app.PushBundle(cmd.Context(), o, args[0], po)
			if err != nil {
				return err
			}
			return view.Pushed(cmd.OutOrStdout(), o.Output, res)
		},
	}
	c.Flags().BoolVar(&po.Insecure, "insecure", false, "allow a registry that answers plain HTTP")
	return c
}
