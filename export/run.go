package export

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/store"
)

// Events reports progress of Run.
type Events struct {
	// ShardDone is called after each shard with its record.
	ShardDone func(rec ShardRecord, done, total int)
	// Tensor is called after each tensor of a shard.
	Tensor shards.Progress
}

// Run exports a checkpoint in one process: plan, every shard in order,
// then the stitch. Shards already finished in out (same inputs) are reused.
func Run(ctx context.Context, ck *model.Checkpoint, out store.Store, r shards.Recipe, ev Events) (*Summary, []ShardRecord, error) {
	return RunWeighted(ctx, ck, out, r, nil, ev)
}

// RunWeighted is Run with an importance matrix (nil: none), which the
// recipe must name (r.Imatrix): it is checked against the model and the
// recipe's rotation (shards.Plan.CheckIMatrix) before the first shard, and
// every shard quantizes with its importance.
func RunWeighted(ctx context.Context, ck *model.Checkpoint, out store.Store, r shards.Recipe, im *gguf.IMatrix, ev Events) (*Summary, []ShardRecord, error) {
	if err := r.Validate(); err != nil {
		return nil, nil, err
	}
	p := shards.MakePlan(ck)
	var imp shards.Importance
	if im != nil || r.Imatrix != nil {
		if im == nil || r.Imatrix == nil {
			return nil, nil, fmt.Errorf("export: the recipe names an importance matrix (%v) but one is given (%v): give both or neither", r.Imatrix != nil, im != nil)
		}
		if err := p.CheckIMatrix(ck, r, im); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", r.Imatrix.Location, err)
		}
		var err error
		if imp, err = shards.ImportanceOf(im); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", r.Imatrix.Location, err)
		}
	}
	if _, err := WritePlan(ctx, out, p); err != nil {
		return nil, nil, err
	}
	recs := make([]ShardRecord, 0, len(p.Shards))
	for i, s := range p.Shards {
		rec, err := WriteShardWeighted(ctx, ck, out, p, s, r, imp, ev.Tensor)
		if err != nil {
			return nil, nil, fmt.Errorf("shard %s: %w", s.Name, err)
		}
		recs = append(recs, rec)
		if ev.ShardDone != nil {
			ev.ShardDone(rec, i+1, len(p.Shards))
		}
	}
	sum, err := Stitch(ctx, ck, out, p, r, recs)
	if err != nil {
		return nil, nil, err
	}
	return sum, recs, nil
}

// ReadIMatrix reads an importance matrix (llama.cpp's GGUF form or
// llama-imatrix's legacy .dat) from a store and returns it with the
// SHA-256 of its bytes, which shards.IMatrixRef carries.
func ReadIMatrix(ctx context.Context, s store.Store, key string) (*gguf.IMatrix, string, error) {
	b, err := store.ReadAll(ctx, s, key)
	if err != nil {
		return nil, "", fmt.Errorf("read importance matrix %s: %w", store.Describe(s, key), err)
	}
	im, err := gguf.ReadIMatrix(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, "", &IMatrixError{Location: store.Describe(s, key), Err: err}
	}
	sum := sha256.Sum256(b)
	return im, hex.EncodeToString(sum[:]), nil
}

// IMatrixError is a file that is not an importance matrix adaptq reads
// (truncated, sizes that lie, wrong types): bad input, not a store fault.
type IMatrixError struct {
	Location string
	Err      error
}

func (e *IMatrixError) Error() string { return e.Location + ": " + e.Err.Error() }

func (e *IMatrixError) Unwrap() error { return e.Err }
