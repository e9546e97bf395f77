// Command adaptq quantizes Llama-family checkpoints and reports what it
// measured. Subcommands:
//
//	adaptq inspect [--json] [--scan=false] <model location>
//	adaptq synth --shape <name|json> [--layers N] [--dtype bf16] [--seed 1] --out <location>
//	adaptq import <file.gguf> --out <location> [--dtype f16|bf16|f32] [--max-shard-gib 4]
//	adaptq export --model <location> --type q4_k_m [--rotate hadamard --seed 1] --out <location>
//	adaptq verify --model <checkpoint or .gguf> [--reference <checkpoint>] --text <file> [--ctx 256] [--protocol full|llama.cpp]
//	adaptq generate --model <checkpoint or .gguf> [--prompt text] [-n 48]
//	adaptq run status|retry|pause|resume|abort --workflow-id <id> [--temporal host:port]
//
// A location is a directory, file:///path or s3://bucket/prefix (endpoint and
// credentials from ADAPTQ_S3_ENDPOINT, ADAPTQ_S3_TLS, AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY).
//
// A failure prints one line, "adaptq <command>: <location>: <what is
// wrong>; <what to do>", and exits 2 for usage and bad input, 1 for
// everything else (docs/USAGE.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one subcommand of the CLI.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"inspect", "describe a checkpoint: architecture, parameters, sizes, a per-tensor table", runInspect},
		{"synth", "write a synthetic checkpoint with the tensor shapes of a named architecture", runSynth},
		{"import", "turn a GGUF file into a Hugging Face checkpoint (config.json, safetensors, tokenizer.json)", runImport},
		{"quantize", "quantize a checkpoint with the Temporal pipeline (embedded server and worker unless --temporal)", runQuantize},
		{"calibrate", "collect an importance matrix (llama.cpp's imatrix.gguf) over a calibration text (embedded server and worker unless --temporal)", runCalibrate},
		{"export", "quantize a checkpoint into shard objects, one GGUF file and a Parquet manifest (no Temporal)", runExport},
		{"report", "write <out>/report.html: one self-contained page of the manifest, evaluation and budget (inline SVG charts)", runReport},
		{"verify", "evaluate a checkpoint: perplexity, KL divergence and top-1 agreement against a reference, speed", runVerify},
		{"generate", "greedy text continuation of a prompt", runGenerate},
		{"worker", "run a Temporal worker process (quantize, eval or all roles) with metrics and health endpoints", runWorker},
		{"dev", "run an embedded Temporal server and an in-process worker on this machine until Ctrl-C", runDev},
		{"run", "control a running quantize workflow: status, retry a parked shard, pause, resume, abort", runRun},
	}
}

// errUsage marks errors that are the user's invocation, printed with usage.
// Exit statuses: 2 for usage and bad input, 1 for everything else; a
// *failure carries its own.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	usage := func() {
		fmt.Fprintln(stderr, "usage: adaptq <command> [flags] [arguments]\n\ncommands:")
		for _, c := range commands() {
			fmt.Fprintf(stderr, "  %-10s %s\n", c.name, c.summary)
		}
		fmt.Fprintln(stderr, "\nrun 'adaptq <command> -h' for a command's flags")
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage()
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(ctx, args[1:], stdout, stderr)
			var f *failure
			switch {
			case err == nil:
				return 0
			case errors.Is(err, flag.ErrHelp):
				return 0
			case errors.As(err, &f):
				fmt.Fprintf(stderr, "adaptq %s: %s\n", c.name, f.line)
				return f.code
			case errors.Is(err, errUsage):
				fmt.Fprintf(stderr, "adaptq %s: %v\n", c.name, err)
				return exitBadInput
			}
			fmt.Fprintf(stderr, "adaptq %s: %v\n", c.name, err)
			return exitFailure
		}
	}
	fmt.Fprintf(stderr, "adaptq: unknown command %q\n", args[0])
	usage()
	return 2
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(name, args string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("adaptq "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: adaptq %s %s\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// parseInterleaved parses flags that may come before or after positional
// arguments and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
