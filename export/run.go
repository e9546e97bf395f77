package export

import (
	"context"
	"fmt"

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
	if err := r.Validate(); err != nil {
		return nil, nil, err
	}
	p := shards.MakePlan(ck)
	if _, err := WritePlan(ctx, out, p); err != nil {
		return nil, nil, err
	}
	recs := make([]ShardRecord, 0, len(p.Shards))
	for i, s := range p.Shards {
		rec, err := WriteShard(ctx, ck, out, p, s, r, ev.Tensor)
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
