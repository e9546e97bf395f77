package workflows

import "go.temporal.io/sdk/workflow"

// fanOut runs n activities with at most parallel of them in flight,
// starting them in index order: start(i) starts activity i and done(i, f)
// collects its result. After the first error no new activity starts; the
// running ones are waited for and the first error is returned.
func fanOut(ctx workflow.Context, n, parallel int, start func(i int) workflow.Future, done func(i int, f workflow.Future) error) error {
	sel := workflow.NewSelector(ctx)
	var firstErr error
	inflight, next := 0, 0
	for next < n || inflight > 0 {
		for firstErr == nil && inflight < parallel && next < n {
			i := next
			f := start(i)
			inflight++
			next++
			sel.AddFuture(f, func(f workflow.Future) {
				inflight--
				if err := done(i, f); err != nil && firstErr == nil {
					firstErr = err
				}
			})
		}
		if inflight == 0 {
			break
		}
		sel.Select(ctx)
	}
	return firstErr
}
