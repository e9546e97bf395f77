package infer

import (
	"context"
	"testing"

	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/store"
)

const (
	fixtureF32  = "../testdata/models/stories260k"
	fixtureBF16 = "../testdata/models/stories260k-bf16-sharded"
	fixtureIDs  = "../testdata/text/tinystories-valid-sample.ids"
	fixtureBOS  = 1
)

// loadFixture opens and loads a checkpoint directory.
func loadFixture(tb testing.TB, dir string) *Model {
	tb.Helper()
	ctx := context.Background()
	s, err := store.NewLocal(dir)
	if err != nil {
		tb.Fatal(err)
	}
	ck, err := model.Open(ctx, s)
	if err != nil {
		tb.Fatal(err)
	}
	m, err := LoadModel(ctx, ck)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// fixtureWindows returns the windows of the fixture's ids.
func fixtureWindows(tb testing.TB, p Protocol, ctx int) []Window {
	tb.Helper()
	ids, err := ReadIDsFile(fixtureIDs)
	if err != nil {
		tb.Fatal(err)
	}
	ws, err := Windows(ids, p, ctx, fixtureBOS)
	if err != nil {
		tb.Fatal(err)
	}
	return ws
}

// evaluate runs Evaluate and fails the test on error.
func evaluate(tb testing.TB, m *Model, ws []Window, opts EvalOptions) *Sums {
	tb.Helper()
	s, err := Evaluate(context.Background(), m, ws, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
