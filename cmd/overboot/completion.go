package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/overboot/overboot/server/api"
	"github.com/overboot/overboot/server/state"
)

// completionTimeout bounds the API call behind one completion: a shell
// waiting on a server that does not answer is worse than no suggestions.
const completionTimeout = 3 * time.Second

// completeFirst completes a command's first argument with what list
// reads from the server's API (with the command line's --server and
// --token-file, or their variables). Without a token, or when the server
// does not answer, there are no suggestions and nothing is printed.
// completeSubcommands makes every subcommand of c but the skipped ones
// complete its first argument with list.
func completeSubcommands(c *cobra.Command, f *clientFlags, list func(ctx context.Context, cl *client) ([]cobra.Completion, error), skip ...string) {
	for _, sc := range c.Commands() {
		if !slices.Contains(skip, sc.Name()) {
			sc.ValidArgsFunction = completeFirst(f, list)
		}
	}
}

func completeFirst(f *clientFlags, list func(ctx context.Context, cl *client) ([]cobra.Completion, error)) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveDefault
		}
		return completeFrom(cmd, f, toComplete, list)
	}
}

// completeFlag completes a flag's value as completeFirst does.
func completeFlag(f *clientFlags, list func(ctx context.Context, cl *client) ([]cobra.Completion, error)) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return completeFrom(cmd, f, toComplete, list)
	}
}

func completeFrom(cmd *cobra.Command, f *clientFlags, toComplete string, list func(ctx context.Context, cl *client) ([]cobra.Completion, error)) ([]cobra.Completion, cobra.ShellCompDirective) {
	const none = cobra.ShellCompDirectiveNoFileComp
	cl, err := f.client()
	if err != nil {
		return nil, none
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completionTimeout)
	defer cancel()
	all, err := list(ctx, cl)
	if err != nil {
		return nil, none
	}
	var out []cobra.Completion
	for _, c := range all {
		if strings.HasPrefix(c, toComplete) {
			out = append(out, c)
		}
	}
	return out, none
}

// machineMACs are the machines' MACs, each with its profile and standing.
func machineMACs(ctx context.Context, cl *client) ([]cobra.Completion, error) {
	var ms []api.MachineView
	if err := cl.do(ctx, http.MethodGet, "/machines", nil, &ms); err != nil {
		return nil, err
	}
	out := make([]cobra.Completion, 0, len(ms))
	for _, m := range ms {
		out = append(out, cobra.CompletionWithDesc(m.MAC, fmt.Sprintf("%s, %s, %s", m.Profile, m.Enrolment, m.Address)))
	}
	return out, nil
}

// userNames are the users' names.
func userNames(ctx context.Context, cl *client) ([]cobra.Completion, error) {
	var us []api.UserView
	if err := cl.do(ctx, http.MethodGet, "/users", nil, &us); err != nil {
		return nil, err
	}
	out := make([]cobra.Completion, 0, len(us))
	for _, u := range us {
		out = append(out, u.Name)
	}
	return out, nil
}

// imageNames are the published names, each with its current version.
func imageNames(ctx context.Context, cl *client) ([]cobra.Completion, error) {
	var ims []state.Image
	if err := cl.do(ctx, http.MethodGet, "/images", nil, &ims); err != nil {
		return nil, err
	}
	out := make([]cobra.Completion, 0, len(ims))
	for _, im := range ims {
		out = append(out, cobra.CompletionWithDesc(im.Name, fmt.Sprintf("%s, version %d", im.Kind, im.Version)))
	}
	return out, nil
}
