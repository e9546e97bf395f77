// Command qualitybench measures adaptq's files beside llama.cpp's on the
// real models of testdata/models/REAL.md and writes docs/QUALITY.md
// (`make bench-quality`; tens of minutes to hours on two cores).
//
// For each model it imports the GGUF shipped in the Python package into a
// Hugging Face checkpoint at F16 (the "original" of every comparison),
// exports that checkpoint as an F16 GGUF (the file llama.cpp's quantizer
// starts from), saves the original's top-k log-probabilities on the
// evaluation text, collects importance matrices on the calibration text,
// then writes every variant — adaptq's with `adaptq export`, llama.cpp's
// with llama_model_quantize from node-llama-cpp's libllama — and evaluates
// all of them with one evaluator (`adaptq verify`) against the saved
// reference. A few files are also scored by llama.cpp itself (the node
// oracle), to show how closely the two evaluators agree.
//
// Every step is cached under -work (default .tools/bench/quality), keyed
// by its inputs, so an interrupted run resumes and a rerun only does what
// changed; -fresh forgets the evaluations.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "qualitybench:", err)
		os.Exit(1)
	}
}

// modelSpec is one real model of the bench.
type modelSpec struct {
	Name string // as scripts/models.sh names it
	// Windows evaluated (full protocol, -ctx tokens each): fewer for the
	// larger models, whose forward pass costs more.
	Windows int
}

var allModels = []modelSpec{
	{"smollm2-135m", 4},
	{"qwen2.5-coder-0.5b", 2},
	{"qwen2.5-coder-1.5b", 1},
}

// variant is one file to make and evaluate.
type variant struct {
	Side      string `json:"side"`   // "adaptq" or "llama.cpp"
	Recipe    string `json:"recipe"` // preset / recipe name, lower case
	Optimized bool   `json:"optimized,omitempty"`
	Rotate    bool   `json:"rotate,omitempty"`
	IMatrix   bool   `json:"imatrix,omitempty"`
	// Budget is a budgeted recipe's flag ("--target-bpw 4.8").
	Budget string `json:"budget,omitempty"`
}

// Label names the variant in tables and file names.
func (v variant) Label() string {
	s := v.Side + " " + v.Recipe
	if v.Budget != "" {
		s += " " + v.Budget
	}
	if v.Optimized {
		s += " --optimized"
	}
	if v.Rotate {
		s += " --rotate hadamard"
	}
	if v.IMatrix {
		s += " +imatrix"
	}
	return s
}

func (v variant) slug() string {
	r := strings.NewReplacer(" ", "_", "--", "", "+", "", ".", "p", "=", "")
	return r.Replace(v.Label())
}

// variants are the files of the row groups asked for, most wanted first:
// llama.cpp's file and ours of each preset, then the importance-matrix
// pairs, then our --optimized and --rotate variants, then the rest.
func variants(sets []string) []variant {
	has := func(s string) bool {
		for _, x := range sets {
			if x == s || x == "all" {
				return true
			}
		}
		return false
	}
	var vs []variant
	presets := []string{"q4_k_m", "q2_k", "q3_k_m", "q8_0", "q4_0", "tq2_0"}
	if has("base") {
		for _, r := range presets {
			vs = append(vs, variant{Side: "llama.cpp", Recipe: r}, variant{Side: "adaptq", Recipe: r})
		}
	}
	if has("imatrix") {
		for _, r := range []string{"q4_k_m", "q2_k", "q3_k_m"} {
			vs = append(vs, variant{Side: "llama.cpp", Recipe: r, IMatrix: true},
				variant{Side: "adaptq", Recipe: r, IMatrix: true},
				variant{Side: "adaptq", Recipe: r, IMatrix: true, Optimized: true})
		}
	}
	if has("base") {
		for _, r := range presets {
			vs = append(vs, variant{Side: "adaptq", Recipe: r, Optimized: true}, variant{Side: "adaptq", Recipe: r, Rotate: true})
		}
		vs = append(vs, variant{Side: "adaptq", Recipe: "bitnet"})
	}
	if has("full") {
		vs = append(vs, variant{Side: "llama.cpp", Recipe: "q6_k"}, variant{Side: "adaptq", Recipe: "q6_k"})
		for _, r := range presets {
			vs = append(vs, variant{Side: "adaptq", Recipe: r, Optimized: true, Rotate: true})
		}
		vs = append(vs, variant{Side: "adaptq", Recipe: "bitnet", Rotate: true})
	}
	if has("iquants") {
		for _, r := range []string{"iq4_xs", "iq3_s", "iq3_m", "iq3_xxs", "iq2_m", "iq2_s", "iq2_xs", "iq2_xxs", "iq1_m", "iq1_s"} {
			vs = append(vs, variant{Side: "llama.cpp", Recipe: r, IMatrix: true},
				variant{Side: "adaptq", Recipe: r, IMatrix: true},
				variant{Side: "adaptq", Recipe: r, IMatrix: true, Optimized: true})
		}
	}
	return vs
}

// result is one evaluated file.
type result struct {
	Model     string  `json:"model"`
	Variant   variant `json:"variant"`
	GGUF      string  `json:"gguf"`
	SHA256    string  `json:"sha256"`
	FileBytes int64   `json:"file_bytes"`
	Params    int64   `json:"params"`
	BPW       float64 `json:"bpw"` // whole file × 8 / parameters
	Evaluator string  `json:"evaluator"`
	Tokens    int64   `json:"tokens"`
	PPL       float64 `json:"ppl"`
	RefPPL    float64 `json:"ref_ppl"`
	KLMean    float64 `json:"kl_mean"`
	KLP99     float64 `json:"kl_p99"`
	Top1      float64 `json:"top1"`
	MakeSecs  float64 `json:"make_seconds"`
	EvalSecs  float64 `json:"eval_seconds"`
	TokPerSec float64 `json:"tokens_per_second"`
}

type bench struct {
	root, work, adaptq  string
	evalText, calibText string
	ctx                 int
	topk                int
	log                 io.Writer
	cache               map[string]result // by key
	cross               map[string]crossEntry
	cachePath           string
	report              func() error // rewrites the report from the caches
	calibChunks         int          // calibration windows
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("qualitybench", flag.ContinueOnError)
	modelsFlag := fs.String("models", "all", "comma-separated model names of testdata/models/REAL.md, or all")
	setsFlag := fs.String("sets", "base", "row groups: base (presets; ours plain, --optimized, --rotate), full (also q6_k and --optimized --rotate), imatrix, iquants, all")
	work := fs.String("work", ".tools/bench/quality", "cache folder")
	out := fs.String("out", "docs/QUALITY.md", "the report to (re)write; its hand-written sections above the generated marker are kept")
	ctxLen := fs.Int("ctx", 512, "window length of the evaluation (full protocol)")
	topk := fs.Int("topk", 256, "reference log-probabilities kept per token (KL is the top-k bound)")
	recipes := fs.String("recipes", "", "comma-separated recipes to keep of the row groups (default: all of them)")
	calibChunks := fs.Int("calib-chunks", 16, "windows of the calibration text the importance matrix is collected on")
	windows := fs.String("windows", "", "per-model window counts, e.g. smollm2-135m=8,qwen2.5-coder-1.5b=4 (default: built in)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	b := &bench{root: root, work: filepath.Join(root, *work), ctx: *ctxLen, topk: *topk, log: os.Stderr, calibChunks: *calibChunks,
		evalText: filepath.Join(root, "testdata/text/go-eval.txt"), calibText: filepath.Join(root, "testdata/text/go-calib.txt")}
	if err := os.MkdirAll(b.work, 0o755); err != nil {
		return err
	}
	b.cachePath = filepath.Join(b.work, "results.json")
	b.cache, b.cross = map[string]result{}, map[string]crossEntry{}
	if raw, err := os.ReadFile(b.cachePath); err == nil {
		if err := json.Unmarshal(raw, &b.cache); err != nil {
			return fmt.Errorf("%s: %w", b.cachePath, err)
		}
	}
	if raw, err := os.ReadFile(b.crossPath()); err == nil {
		if err := json.Unmarshal(raw, &b.cross); err != nil {
			return fmt.Errorf("%s: %w", b.crossPath(), err)
		}
	}
	b.adaptq = filepath.Join(b.work, "adaptq")
	b.logf("building adaptq")
	if err := b.cmd(ctx, "go", "build", "-o", b.adaptq, "./cmd/adaptq"); err != nil {
		return err
	}
	specs, err := selectModels(*modelsFlag, *windows)
	if err != nil {
		return err
	}
	sets := strings.Split(*setsFlag, ",")
	// The report holds every cached result of every model at this run's
	// settings, so runs over different models and row groups add up; it
	// is rewritten after every evaluated file, so an interrupted run
	// leaves what it measured.
	b.report = func() error {
		all, cross, shown := b.cached(*windows)
		return writeReport(filepath.Join(root, *out), b, shown, all, cross)
	}
	vs := variants(sets)
	if *recipes != "" {
		var keep []variant
		for _, v := range vs {
			if strings.Contains(","+*recipes+",", ","+v.Recipe+",") {
				keep = append(keep, v)
			}
		}
		vs = keep
	}
	for _, m := range specs {
		if _, _, err := b.model(ctx, m, vs); err != nil {
			return fmt.Errorf("%s: %w", m.Name, err)
		}
	}
	return b.report()
}

func selectModels(names, windows string) ([]modelSpec, error) {
	var specs []modelSpec
	for _, m := range allModels {
		if names == "all" || strings.Contains(","+names+",", ","+m.Name+",") {
			specs = append(specs, m)
		}
	}
	if len(specs) == 0 {
		return nil, fmt.Errorf("no model matches -models %q", names)
	}
	if windows != "" {
		for _, kv := range strings.Split(windows, ",") {
			name, n, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, fmt.Errorf("-windows: %q is not name=count", kv)
			}
			for i := range specs {
				if specs[i].Name == name {
					if _, err := fmt.Sscan(n, &specs[i].Windows); err != nil {
						return nil, fmt.Errorf("-windows %s: %w", kv, err)
					}
				}
			}
		}
	}
	return specs, nil
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "%s qualitybench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// cmd runs a command in the repository root, its output to the log.
func (b *bench) cmd(ctx context.Context, name string, args ...string) error {
	c := exec.CommandContext(ctx, name, args...)
	c.Dir = b.root
	c.Stdout, c.Stderr = b.log, b.log
	if err := c.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

// output runs a command and returns its standard output.
func (b *bench) output(ctx context.Context, name string, args ...string) ([]byte, error) {
	c := exec.CommandContext(ctx, name, args...)
	c.Dir = b.root
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, b.log
	if err := c.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return out.Bytes(), nil
}

// once runs make unless done marks a finished earlier run.
func once(done string, make func() error) error {
	if _, err := os.Stat(done); err == nil {
		return nil
	}
	if err := make(); err != nil {
		return err
	}
	return os.WriteFile(done, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644)
}

func fileSHA(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// cached returns the cached results and cross-checks at the bench's
// context length and top-k, for each model at its window count, and the
// models that have any.
func (b *bench) cached(windows string) ([]result, []crossRow, []modelSpec) {
	specs, _ := selectModels("all", windows)
	var rs []result
	var cs []crossRow
	var shown []modelSpec
	for _, m := range specs {
		suffix := fmt.Sprintf("|ctx%d|w%d|top%d", b.ctx, m.Windows, b.topk)
		n := 0
		for k, r := range b.cache {
			if strings.HasPrefix(k, m.Name+"|") && strings.HasSuffix(k, suffix) {
				rs = append(rs, r)
				n++
			}
		}
		for k, c := range b.cross {
			if strings.HasPrefix(k, "cross|"+m.Name+"|") && strings.HasSuffix(k, fmt.Sprintf("|ctx%d|w4", b.ctx)) {
				cs = append(cs, c.Row)
			}
		}
		if n > 0 {
			shown = append(shown, m)
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].Variant.Label() < rs[j].Variant.Label() })
	sort.Slice(cs, func(i, j int) bool { return cs[i].Label < cs[j].Label })
	return rs, cs, shown
}

func (b *bench) crossPath() string { return filepath.Join(b.work, "cross.json") }

// saveCache writes both caches (JSON maps, keys sorted by encoding/json).
func (b *bench) saveCache() error {
	for path, v := range map[string]any{b.cachePath: b.cache, b.crossPath(): b.cross} {
		raw, err := json.MarshalIndent(v, "", " ")
		if err != nil {
			return err
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, raw, 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	}
	return nil
}
