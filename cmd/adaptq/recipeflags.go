package main

import (
	"flag"
	"fmt"

	"github.com/ohms-project/adaptq/activities"
	"github.com/ohms-project/adaptq/shards"
)

// recipeFlags are the flags that choose a recipe, shared by export and
// quantize.
type recipeFlags struct {
	name, rotate         *string
	seed                 *uint64
	heads, opt, compress *bool
}

// addRecipeFlags declares the recipe flags; nameFlag is the flag naming the
// recipe ("type" for export, "recipe" for quantize).
func addRecipeFlags(fs *flag.FlagSet, nameFlag string) *recipeFlags {
	return &recipeFlags{
		name:     fs.String(nameFlag, "q4_k_m", "recipe: a llama.cpp preset ("+shards.PresetNames()+"; q3_k, q4_k, q5_k are the _m mixtures), uniform-<type> (one type, e.g. uniform-q4_k) or bitnet"),
		rotate:   fs.String("rotate", "none", "rotation of the residual stream: none or hadamard"),
		seed:     fs.Uint64("seed", 1, "rotation seed"),
		heads:    fs.Bool("heads", false, "also rotate each attention head's value/output pair"),
		opt:      fs.Bool("optimized", false, "use the error-minimising quantizers (same byte layouts, slower)"),
		compress: fs.Bool("compress", false, "zstd-compress shard payloads (ratio reported per shard)"),
	}
}

func (f *recipeFlags) rotation() shards.Rotation {
	return shards.Rotation{Kind: *f.rotate, Seed: *f.seed, Heads: *f.heads}
}

// recipe builds and checks the recipe; errors are usage errors.
func (f *recipeFlags) recipe() (shards.Recipe, error) {
	r, err := activities.Recipe(*f.name, f.rotation(), *f.opt, *f.compress)
	if err != nil {
		return shards.Recipe{}, fmt.Errorf("%w: %v", errUsage, err)
	}
	return r, nil
}
