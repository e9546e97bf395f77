package main

import (
	"flag"

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

// recipe builds and checks the recipe; set holds the flags given. An
// unknown recipe or options that do not go together are an
// *activities.Problem, --seed without a rotation a usage error.
func (f *recipeFlags) recipe(set map[string]bool) (shards.Recipe, error) {
	if set["seed"] && !f.rotation().Enabled() {
		return shards.Recipe{}, &failure{code: exitBadInput, line: "--seed: only a rotation uses a seed, but --rotate is " + *f.rotate + "; add --rotate hadamard or drop --seed"}
	}
	return activities.Recipe(*f.name, f.rotation(), *f.opt, *f.compress)
}
