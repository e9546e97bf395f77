package main

import (
	"errors"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/ohms-project/adaptq/activities"
)

// Exit statuses: 2 for usage and bad input, 1 for everything else.
const (
	exitFailure  = 1
	exitBadInput = 2
)

// failure is an error the CLI prints as one line with an exit status; err
// is the whole chain behind it (printed under -v).
type failure struct {
	code int
	line string
	err  error
}

func (f *failure) Error() string { return f.line }
func (f *failure) Unwrap() error { return f.err }

// flagNames are the flags of the recipe and run commands, by the workflow
// input field they set; nameFlag is the flag naming the recipe.
func flagNames(nameFlag string) map[string]string {
	return map[string]string{
		activities.FieldModel:        "--model",
		activities.FieldOutput:       "--out",
		activities.FieldRecipe:       "--" + nameFlag,
		activities.FieldRotation:     "--rotate",
		activities.FieldHeads:        "--heads",
		activities.FieldEvalText:     "--text",
		activities.FieldEvalCtx:      "--ctx",
		activities.FieldEvalProtocol: "--protocol",
		activities.FieldImatrix:      "--imatrix",
		activities.FieldCalibText:    "--calib-text",
		activities.FieldCalibCtx:     "--calib-ctx",
	}
}

// describe turns an error of a run into the one line the CLI prints and
// its exit status: bad input (a Problem, here or from a worker, or any
// other BadInput error of the workflow) is 2, the rest 1. names renders
// the input fields as flags; id is the workflow's, if one was started; log
// says where the full story is.
func describe(err error, names map[string]string, id, log string) *failure {
	var f *failure
	if errors.As(err, &f) {
		return f
	}
	if errors.Is(err, errUsage) {
		return &failure{code: exitBadInput, line: err.Error(), err: err}
	}
	if p, ok := activities.ProblemOf(err); ok {
		return &failure{code: exitBadInput, line: p.Render(names), err: err}
	}
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		if inner := innermostApp(err); inner != nil {
			ae = inner
		}
		if ae.Type() == activities.ErrTypeBadInput {
			return &failure{code: exitBadInput, line: ae.Message(), err: err}
		}
	}
	var we *temporal.WorkflowExecutionError
	if errors.As(err, &we) || ae != nil {
		msg := lastTemporalMessage(err)
		if id != "" {
			msg = "workflow " + id + ": " + msg
		}
		hint := "run with -v for Temporal's error chain"
		if log != "" {
			hint = "the log " + log + " has the details; -v prints Temporal's error chain"
		}
		return &failure{code: exitFailure, line: msg + "; " + hint, err: err}
	}
	return &failure{code: exitFailure, line: err.Error(), err: err}
}

// innermostApp is the deepest application error in err's chain.
func innermostApp(err error) *temporal.ApplicationError {
	var last *temporal.ApplicationError
	for e := err; e != nil; e = errors.Unwrap(e) {
		if ae, ok := e.(*temporal.ApplicationError); ok {
			last = ae
		}
	}
	return last
}

// lastTemporalMessage is the message of the deepest Temporal error in
// err's chain (an application error's message, or a timeout's).
func lastTemporalMessage(err error) string {
	msg := err.Error()
	for e := err; e != nil; e = errors.Unwrap(e) {
		switch t := e.(type) {
		case *temporal.ApplicationError:
			msg = t.Message()
		case *temporal.TimeoutError:
			msg = "timed out (" + strings.ToLower(strings.TrimPrefix(t.TimeoutType().String(), "TIMEOUT_TYPE_")) + ")"
		case *temporal.CanceledError:
			msg = "cancelled"
		}
	}
	return msg
}
