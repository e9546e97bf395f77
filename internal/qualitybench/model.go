package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ohms-project/adaptq/gguf"
	"github.com/ohms-project/adaptq/internal/llamaquant"
)

// paths of one model's cached steps.
type modelWork struct {
	spec                  modelSpec
	dir                   string
	source                string // the GGUF from the Python package
	original              string // the F16 import: the original of every comparison
	f16                   string // the original as an F16 GGUF (llama.cpp's input)
	refLP                 string // the original's saved log-probabilities
	refPPL                float64
	params                int64
	imatrix, imatrixRot   string // imatrix.gguf collected on the original / the rotated original
	evalTokens, evalLimit int
}

// prepare imports the model and makes the shared inputs of its variants.
func (b *bench) prepare(ctx context.Context, m modelSpec) (*modelWork, error) {
	w := &modelWork{spec: m, dir: filepath.Join(b.work, m.Name), evalLimit: m.Windows}
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return nil, err
	}
	out, err := b.output(ctx, "bash", "scripts/models.sh", m.Name)
	if err != nil {
		return nil, err
	}
	w.source = strings.TrimSpace(string(out))
	w.original = filepath.Join(w.dir, "original")
	if err := once(w.original+".done", func() error {
		os.RemoveAll(w.original)
		b.logf("%s: importing %s", m.Name, w.source)
		return b.cmd(ctx, b.adaptq, "import", w.source, "--out", w.original, "--dtype", "f16")
	}); err != nil {
		return nil, err
	}
	f16dir := filepath.Join(w.dir, "f16")
	w.f16 = filepath.Join(f16dir, "model.gguf")
	if err := once(f16dir+".done", func() error {
		os.RemoveAll(f16dir)
		b.logf("%s: the original as an F16 GGUF", m.Name)
		return b.cmd(ctx, b.adaptq, "export", "--model", w.original, "--type", "f16", "--out", f16dir)
	}); err != nil {
		return nil, err
	}
	w.refLP = filepath.Join(w.dir, fmt.Sprintf("reference-ctx%d-w%d-top%d.aqlp", b.ctx, w.evalLimit, b.topk))
	refJSON := w.refLP + ".json"
	if err := once(w.refLP+".done", func() error {
		b.logf("%s: reference log-probabilities (%d windows of %d)", m.Name, w.evalLimit, b.ctx)
		out, err := b.output(ctx, b.adaptq, "verify", "--model", w.original, "--text", b.evalText, "--ctx", fmt.Sprint(b.ctx),
			"--limit", fmt.Sprint(w.evalLimit), "--save-logprobs", w.refLP, "--topk", fmt.Sprint(b.topk), "--json")
		if err != nil {
			return err
		}
		return os.WriteFile(refJSON, out, 0o644)
	}); err != nil {
		return nil, err
	}
	var ref verifyJSON
	if raw, err := os.ReadFile(refJSON); err != nil {
		return nil, err
	} else if err := json.Unmarshal(raw, &ref); err != nil {
		return nil, fmt.Errorf("%s: %w", refJSON, err)
	}
	w.refPPL, w.evalTokens = ref.PPL, int(ref.Tokens)
	f, err := os.Open(w.f16)
	if err != nil {
		return nil, err
	}
	st, _ := f.Stat()
	hdr, err := gguf.Read(f, st.Size())
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", w.f16, err)
	}
	for _, t := range hdr.Tensors {
		w.params += int64(t.NumElements())
	}
	return w, nil
}

// calibrate collects the importance matrix (on the rotated original when
// rot) over the calibration text, once.
func (b *bench) calibrate(ctx context.Context, w *modelWork, rot bool) (string, error) {
	dir := filepath.Join(w.dir, fmt.Sprintf("calib-%d", b.calibChunks))
	args := []string{"calibrate", "--model", w.original, "--text", b.calibText, "--ctx", fmt.Sprint(b.ctx), "--chunks", fmt.Sprint(b.calibChunks), "--out", dir}
	if rot {
		dir += "-rotated"
		args = append(args[:len(args)-1], dir, "--rotate", "hadamard", "--seed", "1")
	}
	if err := once(dir+".done", func() error {
		os.RemoveAll(dir)
		b.logf("%s: importance matrix%s", w.spec.Name, map[bool]string{true: " (rotated)"}[rot])
		return b.cmd(ctx, b.adaptq, args...)
	}); err != nil {
		return "", err
	}
	return filepath.Join(dir, "imatrix.gguf"), nil
}

// verifyJSON is the part of `adaptq verify --json` the bench reads.
type verifyJSON struct {
	Tokens          int64   `json:"tokens"`
	PPL             float64 `json:"ppl"`
	RefPPL          float64 `json:"ref_ppl"`
	KLMean          float64 `json:"kl_mean"`
	KLP99           float64 `json:"kl_p99"`
	Top1            float64 `json:"top1"`
	Seconds         float64 `json:"seconds"`
	TokensPerSecond float64 `json:"tokens_per_second"`
}

// model makes and evaluates every variant of one model.
func (b *bench) model(ctx context.Context, m modelSpec, vs []variant) ([]result, []crossRow, error) {
	w, err := b.prepare(ctx, m)
	if err != nil {
		return nil, nil, err
	}
	var lq *llamaquant.Quantizer
	var out []result
	var cross []crossRow
	// adaptq verify reads tokenizer.json beside a GGUF: the package's file
	// is linked into a folder that has one.
	src := filepath.Join(w.dir, "source", "model.gguf")
	if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
		return nil, nil, err
	}
	if err := copyTokenizer(w, filepath.Dir(src)); err != nil {
		return nil, nil, err
	}
	if _, err := os.Lstat(src); err != nil {
		if err := os.Symlink(w.source, src); err != nil {
			return nil, nil, err
		}
	}
	for _, f := range []struct{ label, file string }{{"the package's GGUF (the import's source)", src}, {"the original as an F16 GGUF", w.f16}} {
		sha, _, err := fileSHA(f.file)
		if err != nil {
			return nil, nil, err
		}
		c, err := b.crossCheck(ctx, w, f.label, f.file, sha)
		if err != nil {
			return nil, nil, fmt.Errorf("cross-check of %s: %w", f.label, err)
		}
		cross = append(cross, c)
	}
	for _, v := range vs {
		file := filepath.Join(w.dir, "files", v.slug(), "model.gguf")
		key := m.Name + "|" + v.Label() + fmt.Sprintf("|ctx%d|w%d|top%d", b.ctx, w.evalLimit, b.topk)
		var makeSecs float64
		if err := once(file+".done", func() error {
			start := time.Now()
			os.RemoveAll(filepath.Dir(file))
			var err error
			if v.Side == "llama.cpp" {
				if lq == nil {
					if lq, err = llamaquant.Find(); err != nil {
						return err
					}
				}
				err = b.llamaQuantize(ctx, w, lq, v, file)
			} else {
				err = b.ours(ctx, w, v, filepath.Dir(file))
			}
			makeSecs = time.Since(start).Seconds()
			if err == nil {
				err = os.WriteFile(file+".secs", []byte(fmt.Sprint(makeSecs)), 0o644)
			}
			return err
		}); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", v.Label(), err)
		}
		sha, size, err := fileSHA(file)
		if err != nil {
			return nil, nil, err
		}
		if crossChecked(v) {
			c, err := b.crossCheck(ctx, w, v.Label(), file, sha)
			if err != nil {
				return nil, nil, fmt.Errorf("cross-check of %s: %w", v.Label(), err)
			}
			cross = append(cross, c)
		}
		if r, ok := b.cache[key]; ok && r.SHA256 == sha {
			out = append(out, r)
			continue
		}
		fmt.Sscan(readString(file+".secs"), &makeSecs)
		b.logf("%s: evaluating %s", m.Name, v.Label())
		raw, err := b.output(ctx, b.adaptq, "verify", "--model", file, "--text", b.evalText, "--ctx", fmt.Sprint(b.ctx),
			"--limit", fmt.Sprint(w.evalLimit), "--reference-logprobs", w.refLP, "--json")
		if err != nil {
			return nil, nil, err
		}
		var vj verifyJSON
		if err := json.Unmarshal(raw, &vj); err != nil {
			return nil, nil, fmt.Errorf("verify of %s: %w", file, err)
		}
		r := result{Model: m.Name, Variant: v, GGUF: file, SHA256: sha, FileBytes: size, Params: w.params,
			BPW: float64(size) * 8 / float64(w.params), Evaluator: "adaptq verify", Tokens: vj.Tokens, PPL: vj.PPL,
			RefPPL: w.refPPL, KLMean: vj.KLMean, KLP99: vj.KLP99, Top1: vj.Top1, MakeSecs: makeSecs, EvalSecs: vj.Seconds,
			TokPerSec: vj.TokensPerSecond}
		b.cache[key] = r
		if err := b.saveCache(); err != nil {
			return nil, nil, err
		}
		if err := b.report(); err != nil {
			return nil, nil, err
		}
		out = append(out, r)
	}
	return out, cross, nil
}

func readString(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

// ours writes adaptq's file of a variant with `adaptq export`.
func (b *bench) ours(ctx context.Context, w *modelWork, v variant, dir string) error {
	args := []string{"export", "--model", w.original, "--type", v.Recipe, "--out", dir}
	if v.Optimized {
		args = append(args, "--optimized")
	}
	if v.Rotate {
		args = append(args, "--rotate", "hadamard", "--seed", "1")
	}
	if v.IMatrix {
		im, err := b.calibrate(ctx, w, v.Rotate)
		if err != nil {
			return err
		}
		args = append(args, "--imatrix", im)
	}
	if v.Budget != "" {
		args = append(args, strings.Fields(v.Budget)...)
	}
	return b.cmd(ctx, b.adaptq, args...)
}

// llamaQuantize writes llama.cpp's file of a preset from the F16 GGUF, with
// the same importance matrix as ours when the variant has one.
func (b *bench) llamaQuantize(ctx context.Context, w *modelWork, lq *llamaquant.Quantizer, v variant, file string) error {
	var opt llamaquant.Options
	if v.IMatrix {
		path, err := b.calibrate(ctx, w, false)
		if err != nil {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		im, err := gguf.ReadIMatrix(bytes.NewReader(raw), int64(len(raw)))
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		opt.Imatrix = map[string][]float32{}
		for name, e := range im.Entries {
			opt.Imatrix[name] = e.Importance()
		}
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	// adaptq verify looks for tokenizer.json beside a GGUF.
	if err := copyTokenizer(w, filepath.Dir(file)); err != nil {
		return err
	}
	b.logf("%s: llama_model_quantize %s", w.spec.Name, v.Recipe)
	return lq.Quantize(ctx, w.f16, file, v.Recipe, opt)
}

// copyTokenizer puts the original's tokenizer.json into dir.
func copyTokenizer(w *modelWork, dir string) error {
	tok, err := os.ReadFile(filepath.Join(w.original, "tokenizer.json"))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "tokenizer.json"), tok, 0o644)
}
