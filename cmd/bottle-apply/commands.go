package main

import (
	"fmt"
	"os"
	"regexp"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/bottle-apply/bottle-apply/app"
	"github.com/bottle-apply/bottle-apply/guest"
	"github.com/bottle-apply/bottle-apply/spec"
)

func execCommand(o *app.Options, s Streams, code *int) *cobra.Command {
	var eo guest.ExecOptions
	c := &cobra.Command{
		Use:               "exec [-i] [-t] [-u UID[:GID]] [-e K=V] [-w DIR] NAME -- CMD [ARG...]",
		Short:             "Run a command in a bottle's agent (stdout, stderr and the exit code are passed through)",
		ValidArgsFunction: completeBottles(o, "", false),
		Args: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if len(args) < 2 || dash != 1 {
				return usageError("exec takes the bottle's name, then -- and the command: bottle-apply exec NAME -- CMD [ARG...]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			eo.Cmd = args[1:]
			if eo.User != "" {
				if _, _, err := spec.ParseUser(eo.User); err != nil {
					return usageError("exec -u: " + err.Error())
				}
			}
			// Raw mode only when stdin goes to the command: without -i,
			// Ctrl-C must still reach bottle-apply.
			if eo.TTY && eo.Interactive {
				if f, ok := s.In.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
					if w, h, err := term.GetSize(int(f.Fd())); err == nil {
						eo.Width, eo.Height = uint(w), uint(h)
					}
					old, err := term.MakeRaw(int(f.Fd()))
					if err == nil {
						defer term.Restore(int(f.Fd()), old)
					}
				}
			}
			var err error
			*code, err = app.Exec(ctx, o, args[0], eo, guest.Stdio{In: s.In, Out: s.Out, Err: s.Err})
			return err
		},
	}
	c.Flags().BoolVarP(&eo.Interactive, "interactive", "i", false, "pass stdin to the command")
	c.Flags().BoolVarP(&eo.TTY, "tty", "t", false, "allocate a terminal")
	c.Flags().StringArrayVarP(&eo.Env, "env", "e", nil, "set an environment variable K=V (repeatable)")
	c.Flags().StringVarP(&eo.Workdir, "workdir", "w", "", "working directory in the agent")
	c.Flags().StringVarP(&eo.User, "user", "u", "", "run as this numeric UID[:GID] (default: spec.agent.user, else the image's user)")
	return c
}

// guestPath matches NAME:PATH, NAME being a bottle name.
var guestPath = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]*[a-z0-9])?):(.*)$`)

func cpCommand(o *app.Options) *cobra.Command {
	return &cobra.Command{
		Use:               "cp SRC NAME:DST | cp NAME:SRC DST",
		Short:             "Copy files or directories between the host and a bottle's agent",
		ValidArgsFunction: completeBottles(o, ":", true),
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usageError("cp takes two arguments: bottle-apply cp SRC NAME:DST, or cp NAME:SRC DST")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			src, dst := args[0], args[1]
			ms, md := guestPath.FindStringSubmatch(src), guestPath.FindStringSubmatch(dst)
			if (ms == nil) == (md == nil) {
				return usageError(fmt.Sprintf("cp %s %s: exactly one side must be NAME:PATH", src, dst))
			}
			in := md != nil
			bottleName := ""
			if in {
				bottleName, dst = md[1], md[3]
			} else {
				bottleName, src = ms[1], ms[3]
			}
			if src == "" || dst == "" {
				return nil // nothing to copy
			}
			return app.Copy(cmd.Context(), o, bottleName, src, dst, in)
		},
	}
}

// schemaCommand prints the JSON Schema of a spec document, which editors
// check specs against.
func schemaCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema (draft 2020-12) of the spec, for editors to check specs as they are written",
		Long: "schema prints the JSON Schema of one document of a spec file, generated from the spec types.\n" +
			"Point an editor at it with a first line such as\n" +
			"  # yaml-language-server: $schema=bottle-apply.schema.json\n" +
			"after `bottle-apply schema > bottle-apply.schema.json`; the repository ships it as " + spec.SchemaFile + ".\n" +
			"It is looser than bottle-apply (rules across fields are checked by bottle-apply alone), never stricter.",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError("schema takes no arguments: bottle-apply schema > bottle-apply.schema.json")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := spec.Schema()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
}
