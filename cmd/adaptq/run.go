package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/rs/zerolog"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/ohms-project/adaptq/workers"
	"github.com/ohms-project/adaptq/workflows"
)

// runActions are the subcommands of `adaptq run`: the update each sends
// (status sends the progress query instead) and its flags' usage.
var runActions = []struct{ name, update, usage string }{
	{"status", "", "print the progress query's answer"},
	{"retry", workflows.UpdateRetryShard, "--shard <name> [--type q8_0]: retry a parked shard (optionally with another type)"},
	{"pause", workflows.UpdatePause, "start no new shard (running shards finish)"},
	{"resume", workflows.UpdateResume, "start shards again"},
	{"abort", workflows.UpdateAbort, "--reason <text>: stop the run and mark its output incomplete"},
}

// runRun is `adaptq run <action> --workflow-id …`: an operator's control
// of a running QuantizeModel through its Temporal Updates.
func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	usage := func() {
		fmt.Fprintln(stderr, "usage: adaptq run status|retry|pause|resume|abort --workflow-id <id> [--temporal host:port] [--namespace ns]")
		for _, a := range runActions {
			fmt.Fprintf(stderr, "  %-7s %s\n", a.name, a.usage)
		}
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		usage()
		return fmt.Errorf("%w: name an action", errUsage)
	}
	action := args[0]
	update := ""
	found := false
	for _, a := range runActions {
		if a.name == action {
			update, found = a.update, true
		}
	}
	if !found {
		usage()
		return fmt.Errorf("%w: unknown action %q", errUsage, action)
	}
	fs := newFlags("run "+action, "--workflow-id <id> [--temporal host:port] [--namespace ns]", stderr)
	id := fs.String("workflow-id", "", "the QuantizeModel run's workflow id")
	hostPort := fs.String("temporal", "127.0.0.1:7233", "Temporal frontend host:port")
	namespace := fs.String("namespace", "default", "Temporal namespace")
	shard := fs.String("shard", "", "retry: the parked shard's name (as status lists it)")
	typ := fs.String("type", "", "retry: quantize the shard's tensors with this type instead of the recipe's")
	reason := fs.String("reason", "", "abort: why (recorded in the output's INCOMPLETE marker)")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 0 || *id == "" {
		fs.Usage()
		return fmt.Errorf("%w: --workflow-id is required", errUsage)
	}
	var arg any
	switch action {
	case "retry":
		if *shard == "" {
			return fmt.Errorf("%w: retry needs --shard", errUsage)
		}
		arg = workflows.RetryShardRequest{Shard: *shard, Type: *typ}
	case "abort":
		if strings.TrimSpace(*reason) == "" {
			return fmt.Errorf("%w: abort needs --reason", errUsage)
		}
		arg = workflows.AbortRequest{Reason: *reason}
	}
	c, err := workers.Dial(ctx, workers.Config{HostPort: *hostPort, Namespace: *namespace, Logger: zerolog.Nop()})
	if err != nil {
		return err
	}
	defer c.Close()

	var p workflows.Progress
	if update == "" {
		v, err := c.QueryWorkflow(ctx, *id, "", workflows.ProgressQuery)
		if err != nil {
			return fmt.Errorf("query %s of %s: %w", workflows.ProgressQuery, *id, err)
		}
		if err := v.Get(&p); err != nil {
			return fmt.Errorf("query %s of %s: %w", workflows.ProgressQuery, *id, err)
		}
	} else {
		opts := client.UpdateWorkflowOptions{WorkflowID: *id, UpdateName: update, WaitForStage: client.WorkflowUpdateStageCompleted}
		if arg != nil {
			opts.Args = []any{arg}
		}
		h, err := c.UpdateWorkflow(ctx, opts)
		if err == nil {
			err = h.Get(ctx, &p)
		}
		if err != nil {
			return fmt.Errorf("%s %s: %s", update, *id, updateError(err))
		}
	}
	printProgress(stdout, *id, p)
	return nil
}

// updateError is the message of a failed update: a validator's rejection
// (an application error) without the SDK's wrapping.
func updateError(err error) string {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return "no such running workflow: " + nf.Error()
	}
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return "rejected: " + ae.Message()
	}
	return err.Error()
}

// printProgress prints a run's progress for an operator.
func printProgress(w io.Writer, id string, p workflows.Progress) {
	fmt.Fprintf(w, "%s: phase %s, shards %d/%d done, %d running", id, p.Phase, p.ShardsDone, p.ShardsTotal, p.ShardsRunning)
	if p.Paused {
		fmt.Fprint(w, ", paused")
	}
	if p.AbortReason != "" {
		fmt.Fprintf(w, ", aborting (%s)", p.AbortReason)
	}
	fmt.Fprintln(w)
	for _, s := range p.Parked {
		fmt.Fprintf(w, "  parked %s: %s\n", s.Shard, s.Error)
	}
}
