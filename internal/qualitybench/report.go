package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// marker separates the hand-written part of docs/QUALITY.md (kept) from the
// part this command writes.
const marker = "<!-- qualitybench writes everything below this line; edit above it -->"

func writeReport(path string, b *bench, specs []modelSpec, rs []result, cross []crossRow) error {
	var head string
	if old, err := os.ReadFile(path); err == nil {
		s := string(old)
		if i := strings.Index(s, marker); i >= 0 {
			head = s[:i]
		} else {
			head = s + "\n"
		}
	} else {
		head = "# Quality on real models\n\n"
	}
	var sb strings.Builder
	sb.WriteString(head)
	sb.WriteString(marker + "\n\n")
	fmt.Fprintf(&sb, "## Measured (`make bench-quality`, %s)\n\n", time.Now().UTC().Format("2006-01-02"))
	sb.WriteString("Every file below is evaluated by the same evaluator, `adaptq verify`, against the same saved reference: the\n")
	sb.WriteString("original's top-256 log-probabilities (so KL is the top-256 bound, see \"Method\"), on the same windows of\n")
	fmt.Fprintf(&sb, "`testdata/text/go-eval.txt` (full protocol, ctx %d). Bits per weight = whole GGUF file bytes × 8 / parameters.\n", b.ctx)
	sb.WriteString("\"adaptq\" rows are written by `adaptq export`, \"llama.cpp\" rows by `llama_model_quantize` (node-llama-cpp 3.21.1's\n")
	sb.WriteString("libllama) from the F16 GGUF of the same original; `+imatrix` rows use the same importance matrix on both sides,\n")
	fmt.Fprintf(&sb, "collected by `adaptq calibrate --chunks %d` (windows of %d tokens) on `testdata/text/go-calib.txt` (disjoint from the evaluation text).\n\n", b.calibChunks, b.ctx)
	byModel := map[string][]result{}
	for _, r := range rs {
		byModel[r.Model] = append(byModel[r.Model], r)
	}
	for _, m := range specs {
		list := byModel[m.Name]
		if len(list) == 0 {
			continue
		}
		fmt.Fprintf(&sb, "### %s\n\n", m.Name)
		fmt.Fprintf(&sb, "Original: the F16 import of the package's GGUF (%d parameters), PPL %.4f on %d scored tokens (%d windows).\n\n",
			list[0].Params, list[0].RefPPL, list[0].Tokens, m.Windows)
		sort.SliceStable(list, func(i, j int) bool { return list[i].FileBytes > list[j].FileBytes })
		sb.WriteString("| file | bytes | bits/weight | PPL | mean KLD | p99 KLD | top-1 | made in | eval tok/s |\n")
		sb.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
		for _, r := range list {
			fmt.Fprintf(&sb, "| %s | %d | %.3f | %.4f | %.5f | %.4f | %.2f %% | %.0f s | %.0f |\n",
				r.Variant.Label(), r.FileBytes, r.BPW, r.PPL, r.KLMean, r.KLP99, 100*r.Top1, r.MakeSecs, r.TokPerSec)
		}
		sb.WriteString("\n")
		sb.WriteString(compare(list))
		var cs []crossRow
		for _, c := range cross {
			if c.Model == m.Name {
				cs = append(cs, c)
			}
		}
		sb.WriteString(crossTable(cs))
	}
	return os.WriteFile(path, []byte(sb.String()), 0o644)
}

// compare pairs every adaptq file with llama.cpp's file of the same recipe
// (and imatrix setting): who has the lower mean KLD, and at what size.
func compare(list []result) string {
	type k struct {
		recipe string
		im     bool
	}
	llama := map[k]result{}
	for _, r := range list {
		if r.Variant.Side == "llama.cpp" {
			llama[k{r.Variant.Recipe, r.Variant.IMatrix}] = r
		}
	}
	var sb strings.Builder
	sb.WriteString("| adaptq file | vs llama.cpp's | bytes (ours / theirs) | mean KLD (ours / theirs) | verdict |\n")
	sb.WriteString("| --- | --- | ---: | ---: | --- |\n")
	n := 0
	for _, r := range list {
		if r.Variant.Side != "adaptq" {
			continue
		}
		l, ok := llama[k{r.Variant.Recipe, r.Variant.IMatrix}]
		if !ok {
			continue
		}
		n++
		br, kr := float64(r.FileBytes)/float64(l.FileBytes), r.KLMean/l.KLMean
		verdict := "worse"
		switch {
		case br <= 1.0005 && kr < 0.995:
			verdict = "**better at equal or fewer bytes**"
		case br <= 1.0005 && kr <= 1.005:
			verdict = "level"
		case br > 1.0005 && kr < 1:
			verdict = fmt.Sprintf("lower KLD but %.1f %% larger", 100*(br-1))
		}
		fmt.Fprintf(&sb, "| %s | %s | %.4f | %.3f | %s |\n", r.Variant.Label(), l.Variant.Label(), br, kr, verdict)
	}
	if n == 0 {
		return ""
	}
	return sb.String() + "\n"
}
