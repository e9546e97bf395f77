package shards

import (
	"fmt"

	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/quant"
)

// ImatrixRequiredError says that a recipe writes a tensor in a type that
// llama.cpp quantizes only with an importance matrix (NeedsImatrix), and
// none is given.
type ImatrixRequiredError struct {
	Recipe string
	// Tensor is the first such tensor, by its GGUF name, and Type its type.
	Tensor string
	Type   quant.Type
}

func (e *ImatrixRequiredError) Error() string {
	return fmt.Sprintf("recipe %s needs an importance matrix (%s would be %s)", e.Recipe, e.Tensor, e.Type)
}

// ImatrixRequired returns an *ImatrixRequiredError when the recipe, on this
// plan and without an importance matrix, writes a tensor llama-quantize
// refuses to write without one (NeedsImatrix of its type after the
// fallback: a model whose rows fit no 256-block needs none), and nil
// otherwise. Call it before the first shard when no importance matrix is
// given.
func (p *Plan) ImatrixRequired(ck *model.Checkpoint, r Recipe) error {
	if err := r.Validate(); err != nil {
		return err
	}
	for _, s := range p.Shards {
		jobs, err := shardJobs(ck, s, r)
		if err != nil {
			return err
		}
		for _, j := range jobs {
			typ, err := quant.FitType(r.typeFor(ck.Config, j.slot(), false), int(j.cols))
			if err != nil {
				return &InputError{File: j.src.File, Tensor: j.src.Name, Err: err}
			}
			if !NeedsImatrix(typ, j.role) {
				continue
			}
			name, err := gguf.TensorName(j.role, j.layer, j.bias)
			if err != nil {
				return err
			}
			return &ImatrixRequiredError{Recipe: r.Name, Tensor: name, Type: typ}
		}
	}
	return nil
}
