package shards_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ohms-project/adaptq/model"
	"github.com/ohms-project/adaptq/quant"
	"github.com/ohms-project/adaptq/shards"
	"github.com/ohms-project/adaptq/synth"
)

// TestNamedRecipes: llama-quantize's names (and aliases) are presets,
// uniform-<type> one type, bitnet the tq2_0 preset with BitNet's
// quantization; the file type follows; unknown names fail naming them.
func TestNamedRecipes(t *testing.T) {
	for _, tc := range []struct {
		name, preset string
		linear       quant.Type
		ftype        uint32
		bitnet       bool
	}{
		{"q4_k_m", "q4_k_m", 0, 15, false},
		{"Q4_K_M", "q4_k_m", 0, 15, false},
		{"q4_k", "q4_k_m", 0, 15, false},
		{"q3_k", "q3_k_m", 0, 12, false},
		{"q5_k", "q5_k_m", 0, 17, false},
		{"q2_k", "q2_k", 0, 10, false},
		{"q8_0", "q8_0", 0, 7, false},
		{"f16", "f16", 0, 1, false},
		{"tq1_0", "tq1_0", 0, 36, false},
		{"bitnet", "tq2_0", 0, 37, true},
		{"iq4_xs", "iq4_xs", 0, 30, false},
		{"IQ4_NL", "iq4_nl", 0, 25, false},
		{"iq3_m", "iq3_m", 0, 27, false},
		{"iq3_s", "iq3_s", 0, 26, false},
		{"iq3_xs", "iq3_xs", 0, 22, false},
		{"iq3_xxs", "iq3_xxs", 0, 23, false},
		{"iq2_m", "iq2_m", 0, 29, false},
		{"iq2_s", "iq2_s", 0, 28, false},
		{"iq2_xs", "iq2_xs", 0, 20, false},
		{"iq2_xxs", "iq2_xxs", 0, 19, false},
		{"iq1_m", "iq1_m", 0, 31, false},
		{"iq1_s", "iq1_s", 0, 24, false},
		{"uniform-iq3_s", "", quant.IQ3_S, 26, false},
		{"uniform-q4_k", "", quant.Q4_K, 14, false},
		{"uniform-q3_k", "", quant.Q3_K, 11, false},
		{"uniform-q2_k", "", quant.Q2_K, 10, false},
		{"uniform-q8_0", "", quant.Q8_0, 7, false},
		{"uniform-tq2_0", "", quant.TQ2_0, 37, false},
	} {
		r, err := shards.NamedRecipe(tc.name)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		ft, ok := r.FileType()
		if r.Name != strings.ToLower(tc.name) || r.Preset != tc.preset || r.Linear != tc.linear || r.BitNet != tc.bitnet || !ok || uint32(ft) != tc.ftype {
			t.Errorf("%s: %+v, file type %d %v; want preset %q linear %s ftype %d", tc.name, r, ft, ok, tc.preset, tc.linear, tc.ftype)
		}
		if err := r.Validate(); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		// The recipe is part of the workflow input and of every shard key.
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var back shards.Recipe
		if err := json.Unmarshal(b, &back); err != nil || back.Preset != r.Preset || back.Linear != r.Linear || back.Output != r.Output {
			t.Errorf("%s: JSON round trip %s → %+v, %v", tc.name, b, back, err)
		}
	}
	for _, bad := range []string{"q4_k_x", "uniform-q9", "q2_k_s", "mxfp4_moe", ""} {
		if _, err := shards.NamedRecipe(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("NamedRecipe(%q): %v, want an error naming it", bad, err)
		}
	}
	bad := shards.Recipe{Name: "x", Preset: "q4_k_x"}
	if err := bad.Validate(); err == nil {
		t.Error("a recipe with an unknown preset validated")
	}
	bad = shards.Recipe{Name: "x", Preset: "q4_k_m", BitNet: true}
	if err := bad.Validate(); err == nil {
		t.Error("bitnet over Q4_K validated")
	}
}

// TestPresetKnownMixtures checks the presets against the published type
// counts of llama.cpp's files of Llama-3-8B (32 layers, GQA 4, untied,
// every row a multiple of 256): Q4_K_M holds 33 Q6_K tensors (attn_v and
// ffn_down in the 16 layers of use_more_bits, and output), the rest Q4_K;
// Q3_K_M has Q5_K attn_v in layers 0-1 and Q5_K ffn_down in layers 0-1
// (n/16), Q4_K elsewhere for attn_v, ffn_down and attn_output; Q2_K raises
// attn_v to Q4_K (GQA ≥ 4) and ffn_down and attn_output to Q3_K and keeps
// the embedding at Q2_K.
func TestPresetKnownMixtures(t *testing.T) {
	_, cfg, err := synth.ShapeConfig("llama-3-8b", 0)
	if err != nil {
		t.Fatal(err)
	}
	count := func(preset string) map[string]map[quant.Type]int {
		r, err := shards.NamedRecipe(preset)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]map[quant.Type]int{}
		add := func(role model.Role, layer, cols int) {
			typ, err := r.OutputType(cfg, shards.Slot{Role: role, Layer: layer, Cols: cols})
			if err != nil {
				t.Fatal(err)
			}
			if out[role.String()] == nil {
				out[role.String()] = map[quant.Type]int{}
			}
			out[role.String()][typ]++
		}
		add(model.RoleEmbed, -1, 4096)
		add(model.RoleLMHead, -1, 4096)
		for l := 0; l < cfg.NumLayers; l++ {
			for _, role := range []model.Role{model.RoleQ, model.RoleK, model.RoleV, model.RoleO, model.RoleGate, model.RoleUp} {
				add(role, l, 4096)
			}
			add(model.RoleDown, l, 14336)
		}
		return out
	}
	q4km := count("q4_k_m")
	if q4km["v"][quant.Q6_K] != 16 || q4km["down"][quant.Q6_K] != 16 || q4km["lm_head"][quant.Q6_K] != 1 ||
		q4km["embed"][quant.Q4_K] != 1 || q4km["q"][quant.Q4_K] != 32 || q4km["v"][quant.Q4_K] != 16 {
		t.Errorf("q4_k_m: %v", q4km)
	}
	q3km := count("q3_k_m")
	if q3km["v"][quant.Q5_K] != 2 || q3km["v"][quant.Q4_K] != 30 || q3km["down"][quant.Q5_K] != 2 || q3km["down"][quant.Q4_K] != 30 ||
		q3km["o"][quant.Q4_K] != 32 || q3km["q"][quant.Q3_K] != 32 || q3km["embed"][quant.Q3_K] != 1 {
		t.Errorf("q3_k_m: %v", q3km)
	}
	q2k := count("q2_k")
	if q2k["v"][quant.Q4_K] != 32 || q2k["down"][quant.Q3_K] != 32 || q2k["o"][quant.Q3_K] != 32 || q2k["embed"][quant.Q2_K] != 1 || q2k["lm_head"][quant.Q6_K] != 1 {
		t.Errorf("q2_k: %v", q2k)
	}
	q4ks := count("q4_k_s")
	if q4ks["v"][quant.Q5_K] != 4 || q4ks["down"][quant.Q5_K] != 4 || q4ks["v"][quant.Q4_K] != 28 {
		t.Errorf("q4_k_s: %v", q4ks)
	}
	q80 := count("q8_0")
	if q80["lm_head"][quant.Q8_0] != 1 || q80["v"][quant.Q8_0] != 32 || q80["embed"][quant.Q8_0] != 1 {
		t.Errorf("q8_0: %v", q80)
	}
	tq := count("tq1_0")
	if tq["embed"][quant.Q4_K] != 1 || tq["lm_head"][quant.Q6_K] != 1 || tq["down"][quant.TQ1_0] != 32 {
		t.Errorf("tq1_0: %v", tq)
	}
}
