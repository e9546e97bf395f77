package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/ohms-project/adaptq/report"
	"github.com/ohms-project/adaptq/store"
)

// runReport writes (or refreshes) <out>/report.html from the output's
// manifest, evaluation and budget, and prints its location.
func runReport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("report", "<output location>", stderr)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return fmt.Errorf("%w: one output location is required", errUsage)
	}
	out, err := store.Open(absLocation(pos[0]))
	if err != nil {
		return &failure{code: exitBadInput, line: fmt.Sprintf("%s: %v", pos[0], err), err: err}
	}
	key, err := report.Write(ctx, out)
	if errors.Is(err, store.ErrNotFound) {
		return &failure{code: exitBadInput, line: fmt.Sprintf("%s: no %s; give the output of adaptq quantize or export", out.Location(), report.ManifestKey), err: err}
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, store.Describe(out, key))
	return nil
}
